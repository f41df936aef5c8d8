"""``dsl``: dual softmax inference (DSL), ``S * softmax_dim0(S / temp)``.

Computed in float64 whatever the input dtype, blockwise over columns so the temporaries stay
bounded for galleries of several thousand items. Inputs must be finite (the softmax
exponentiates them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.retrieval.metrics import check_scores

from pipeline.retrieval.strategies.base import Direction, Rescored, Strategy, register_strategy

# Target size of one block of temporaries (entries); 4 M float64 = 32 MiB.
_BLOCK_ENTRIES = 1 << 22


def _check_finite(scores: np.ndarray, name: str) -> np.ndarray:
    arr = check_scores(scores, name)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        first = tuple(int(x) for x in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name}: infinite score at (row, col) = {first}; strategies need finite scores")
    return arr


def dsl(sim: np.ndarray, temp: float = 0.01) -> np.ndarray:
    """Dual softmax: ``S * softmax_dim0(S / temp)``.

    The prior for query ``i`` and item ``j`` is the softmax of column ``j`` over all queries, so an
    item that many queries like (a hub) gets a small prior for each of them. The official
    DiCoSA/MAC-VR code also multiplies by the number of queries: a positive constant that changes
    no ranking, left out here.

    Numerics: the softmax is computed stably (column max subtracted) in float64. A prior that
    underflows to exactly 0 (``S`` differences beyond ~7.4 at ``temp=0.01``; ~1.0 in the
    reference's float32) makes the product 0 and can tie items; the metrics' tie policy then
    decides (``evaluate_all`` warns when that touches a ground truth).
    """
    if not temp > 0:
        raise ValueError(f"dsl temp must be > 0, got {temp}")
    sim = _check_finite(sim, "sim")
    n_rows, n_cols = sim.shape
    out = np.empty((n_rows, n_cols), dtype=np.float64)
    step = max(1, _BLOCK_ENTRIES // n_rows)
    for start in range(0, n_cols, step):  # column blocks: the softmax runs down whole columns
        block = np.asarray(sim[:, start:start + step], dtype=np.float64)
        logits = block / temp
        logits -= logits.max(axis=0, keepdims=True)
        prior = np.exp(logits)
        prior /= prior.sum(axis=0, keepdims=True)
        out[:, start:start + step] = block * prior
    return out



@dataclass(frozen=True)
class DSLParams:
    """Dual-softmax temperatures, one per direction (official: 0.01 both)."""

    t2v_temp: float
    v2t_temp: float

    def __post_init__(self) -> None:
        for name in ("t2v_temp", "v2t_temp"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@register_strategy
class DualSoftmax(Strategy):
    name, label, description = "dsl", "DSL", "dual softmax over the queries (prior from each item's column)"
    params_type = DSLParams

    @classmethod
    def reference(cls) -> DSLParams:
        return DSLParams(t2v_temp=0.01, v2t_temp=0.01)

    def apply(self, sim: np.ndarray, direction: Direction, params: DSLParams,
              querybank: np.ndarray | None = None) -> Rescored:
        return Rescored(dsl(sim, params.t2v_temp if direction == "t2v" else params.v2t_temp))
