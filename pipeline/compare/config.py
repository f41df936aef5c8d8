"""Typed configuration of the ``compare`` stage (``params.yaml: compare``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.retrieval.uncertainty import METRICS, BootstrapConfig


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
    """

    baseline: str
    table2: list[str]
    table4: list[str]
    metrics: list[str]
    bootstrap: BootstrapSettings

    def __post_init__(self) -> None:
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics:
            raise ValueError(f"metrics must be a non-empty list of {list(METRICS)}, got {self.metrics}")
        for name in ("table2", "table4"):
            rows = getattr(self, name)
            if len(set(rows)) != len(rows):
                raise ValueError(f"{name} lists a variant twice: {rows}")
