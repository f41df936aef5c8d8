"""The paper's ablation tables (Tab. 5-7, Fig. 4) from ``dvc exp`` runs: ``macvr paper-tables``.

A user utility, not a stage: no DVC stage depends on this package, so changing it re-runs nothing.
``registry``: the tables as sweeps of params keys; ``match``: which runs are which rows;
``render``: Markdown, JSON and CSV; ``command``: the CLI.
"""
