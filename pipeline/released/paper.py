"""The paper's published numbers (Tab. 2), as data, and how a measurement stands against them.

``pipeline/released/data/paper_tab2.yaml`` holds the text-to-video R@1/5/10, MdR and MnR of MAC-VR
and the authors' DiCoSA* on MSR-VTT 1k-A, DiDeMo and ActivityNet Captions under no strategy,
QB-Norm and DSL. :func:`beside` lines a measured metric (with its bootstrap interval) up with the
published value and says whether the published value lies outside the interval.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data" / "paper_tab2.yaml"
METRICS = ("R1", "R5", "R10", "MdR", "MnR")


@lru_cache(maxsize=1)
def paper_tab2() -> dict[str, Any]:
    """The whole data file (source, settings, model names, values)."""
    return yaml.safe_load(DATA.read_text())


def published(dataset: str, model: str) -> dict[str, dict[str, float]] | None:
    """``{strategy: {metric: value}}`` of ``model`` (macvr | dicosa) on ``dataset``, or None."""
    return paper_tab2()["values"].get(dataset, {}).get(model)


def beside(measured: dict[str, float], paper: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per metric: the published value, the measured one with its interval, and ``outside``:
    True when the published value is not inside [lo, hi]."""
    out = {}
    for m in METRICS:
        if m in paper and m in measured:
            lo, hi = measured[f"{m}_lo"], measured[f"{m}_hi"]
            out[m] = {"published": float(paper[m]), "measured": float(measured[m]), "lo": float(lo), "hi": float(hi),
                      "outside": not (lo <= float(paper[m]) <= hi)}
    return out
