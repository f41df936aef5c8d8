"""Paired comparison of two evaluated variants on the same test queries."""

from __future__ import annotations

from typing import Any

from pipeline.compare.config import BootstrapSettings
from pipeline.evaluation.results import EvalResult
from pipeline.retrieval.uncertainty import draws, paired_difference


class CompareError(ValueError):
    """The two results cannot be compared pairwise (different test sets)."""


def compare_results(a: EvalResult, b: EvalResult, settings: BootstrapSettings) -> dict[str, Any]:
    """``{direction: {strategy: {metric: {diff, lo, hi, p}}}}`` of ``a - b`` for every strategy
    both evaluated (same bootstrap draws of the test videos for both)."""
    if not a.same_queries(b):
        raise CompareError(f"{a.path} and {b.path} ranked different test queries or galleries; a paired "
                           "comparison needs the same test split")
    weights = draws(a.n_videos, settings.resamples, settings.seed)
    out: dict[str, Any] = {}
    for direction in ("t2v", "v2t"):
        shared = [s for s in a.strategies(direction) if s in b.strategies(direction)]
        out[direction] = {s: paired_difference(a.entries(direction, s), b.entries(direction, s), weights,
                                               settings.level) for s in shared}
    return out


def round_p(p: float, digits: int = 3) -> float:
    """A p-value for a metrics file: ``digits`` decimals, but 2 significant digits below 0.01, so
    a small p (never below 2/B) is never written as 0."""
    return float(f"{p:.2g}") if 0 < p < 0.01 else round(p, digits)


def flatten(diffs: dict[str, Any], digits: int = 3) -> dict[str, Any]:
    """``{direction: {strategy: {R1_diff, R1_lo, R1_hi, R1_p, ...}}}`` for DVC metrics files."""
    return {d: {s: {f"{m}_{k}": round_p(v, digits) if k == "p" else round(v, digits)
                    for m, by in metrics.items() for k, v in by.items()}
                for s, metrics in strategies.items()}
            for d, strategies in diffs.items()}
