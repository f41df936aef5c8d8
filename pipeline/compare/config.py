"""Typed configuration of the ``compare`` stage (``params.yaml: compare``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.retrieval.uncertainty import METRICS, BootstrapConfig


PAPER_MODELS = ("macvr", "dicosa")  # the models of the paper's Tab. 2 (pipeline/released/data/paper_tab2.yaml)

# The paired bootstrap draws the same way as evaluate's intervals (one settings type).
BootstrapSettings = BootstrapConfig


@dataclass(frozen=True)
class CompareConfig:
    """How the evaluated variants are compared and tabulated.

    baseline: the variant every other is compared with, paired (the paper's DiCoSA).
    table2: variants of the Tab. 2-like table (rows), each under every evaluated strategy.
    table4: variants of the Tab. 4-like ablation table (rows), in order.
    metrics: metric columns of the tables (R1, R5, R10, R50, MdR, MnR).
    bootstrap: the paired bootstrap's draws.
    paper: variant -> the paper's model (``macvr`` | ``dicosa``) whose published Tab. 2 values are
        shown beside its measurement (on MSR-VTT, DiDeMo and ActivityNet; ``{}``: none).
    """

    baseline: str
    table2: list[str]
    table4: list[str]
    metrics: list[str]
    bootstrap: BootstrapSettings
    paper: dict[str, str]

    def __post_init__(self) -> None:
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics:
            raise ValueError(f"metrics must be a non-empty list of {list(METRICS)}, got {self.metrics}")
        bad = {v: m for v, m in self.paper.items() if m not in PAPER_MODELS}
        if bad:
            raise ValueError(f"paper maps variants to the paper's models {list(PAPER_MODELS)}, got {bad}")
        for name in ("table2", "table4"):
            rows = getattr(self, name)
            if len(set(rows)) != len(rows):
                raise ValueError(f"{name} lists a variant twice: {rows}")
