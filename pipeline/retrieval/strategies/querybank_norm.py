"""``qb``: querybank normalisation with the dynamic inverted softmax (Bogolin et al., CVPR 2022).

Computed in float64 whatever the input dtype, blockwise so the temporaries stay bounded. The
querybank scores M querybank queries (from the training split, same modality as the test
queries) against the same gallery items as the test matrix.
"""

from __future__ import annotations

import numpy as np

from pipeline.retrieval.metrics import check_scores

import logging
from dataclasses import dataclass

from pipeline.retrieval.strategies.base import Direction, Rescored, Strategy, register_strategy
from pipeline.retrieval.strategies.dual_softmax import _check_finite

log = logging.getLogger(__name__)

# Target size of one block of temporaries (entries); 4 M float64 = 32 MiB.
_BLOCK_ENTRIES = 1 << 22


def querybank_activation(querybank: np.ndarray, k: int = 1, theta: int = 1) -> np.ndarray:
    """Activation set of dynamic inverted softmax: boolean mask over the gallery columns.

    Item ``j`` is active when it is among the top-``k`` items of at least ``theta`` querybank rows.
    Ties for the k-th place go to the lower column index (so ``k=1`` is ``argmax``).
    """
    querybank = check_scores(querybank, "querybank")
    n_rows, n_cols = querybank.shape
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n_cols:
        raise ValueError(f"qb k must be an integer in [1, {n_cols}] (gallery size), got {k!r}")
    if not isinstance(theta, (int, np.integer)) or theta < 1:
        raise ValueError(f"qb theta must be an integer >= 1, got {theta!r}")
    counts = np.zeros(n_cols, dtype=np.int64)
    if k == 1:
        counts += np.bincount(np.argmax(querybank, axis=1), minlength=n_cols)
    else:
        step = max(1, _BLOCK_ENTRIES // n_cols)
        for start in range(0, n_rows, step):
            block = querybank[start:start + step]
            kth = np.partition(block, n_cols - k, axis=1)[:, n_cols - k:n_cols - k + 1]  # k-th largest
            above = block > kth
            tied = block == kth
            # Fill the places left after the strictly-greater items with the first tied ones.
            free = k - np.count_nonzero(above, axis=1, keepdims=True)
            take = above | (tied & (np.cumsum(tied, axis=1) <= free))
            counts += np.count_nonzero(take, axis=0)
    return counts >= theta


def _column_logsumexp(querybank: np.ndarray, beta: float) -> np.ndarray:
    """``log sum_m exp(beta * P[m, j])`` for every column ``j``, streamed over row blocks."""
    n_rows, n_cols = querybank.shape
    running_max = np.full(n_cols, -np.inf)
    running_sum = np.zeros(n_cols)
    step = max(1, _BLOCK_ENTRIES // n_cols)
    for start in range(0, n_rows, step):
        block = beta * np.asarray(querybank[start:start + step], dtype=np.float64)
        new_max = np.maximum(running_max, block.max(axis=0))
        running_sum = running_sum * np.exp(running_max - new_max) + np.exp(block - new_max).sum(axis=0)
        running_max = new_max
    return running_max + np.log(running_sum)


def qb_norm(sim: np.ndarray, querybank: np.ndarray, beta: float = 20.0, k: int = 1,
            theta: int = 1) -> np.ndarray:
    """Querybank normalisation with the dynamic inverted softmax (Bogolin et al., CVPR 2022).

    ``querybank`` (M x N) scores M querybank queries (from the training split, same modality as
    the test queries) against the same N gallery items as ``sim`` (Q x N). Rows of ``sim`` whose
    top-1 item (``argmax``, first on ties) is in :func:`querybank_activation` are normalised

        eta_ij = exp(beta * S_ij) / sum_m exp(beta * P_mj),

    other rows keep their raw scores. As in the official QB-Norm code, the normaliser sums over
    the querybank only: the test query itself is not included (the querybank is a fixed probe
    of each item's hubness, independent of which test queries are asked).

    Returned values: normalised rows hold ``log eta = beta*S - logsumexp_m(beta*P_m)``, not
    ``eta``. ``exp(70*S)`` overflows float32 and ``eta`` itself underflows to 0 for most items
    (creating false ties), while the log is exact and orders each row identically. Rows are
    ranked independently, so mixing log-normalised rows with raw rows changes no metric;
    comparing values *across* rows of the result is meaningless (as it is for the official
    output, which mixes probabilities with raw scores).

    Defaults are the official QB-Norm ones (beta 20, k 1, theta 1); DiCoSA / MAC-VR use beta 70,
    k 1, theta 3 (t2v) and 5 (v2t).
    """
    return qb_norm_with_info(sim, querybank, beta, k, theta)[0]


def qb_norm_with_info(sim: np.ndarray, querybank: np.ndarray, beta: float = 20.0, k: int = 1,
                      theta: int = 1) -> tuple[np.ndarray, dict[str, int]]:
    """:func:`qb_norm` and how much it did: ``active_items`` (gallery items in the activation
    set) and ``normalised_queries`` (rows re-scored), of ``gallery_items`` / ``queries``.

    When nothing is activated (a small or unrepresentative querybank), QB-Norm returns the raw
    scores: the counts make that visible instead of a silent no-op.
    """
    if not beta > 0:
        raise ValueError(f"qb beta must be > 0, got {beta}")
    sim = _check_finite(sim, "sim")
    querybank = _check_finite(querybank, "querybank")
    if querybank.shape[1] != sim.shape[1]:
        raise ValueError(f"querybank has {querybank.shape[1]} gallery columns but sim has {sim.shape[1]}; "
                         "both must score the same gallery items in the same order")
    active = querybank_activation(querybank, k, theta)
    rows = active[np.argmax(sim, axis=1)]
    out = np.array(sim, dtype=np.float64)  # always a copy
    if rows.any():
        log_norm = _column_logsumexp(querybank, float(beta))
        out[rows] = beta * out[rows] - log_norm
    info = {"active_items": int(active.sum()), "gallery_items": int(active.size),
            "normalised_queries": int(rows.sum()), "queries": int(rows.size),
            "querybank_queries": int(querybank.shape[0])}
    return out, info


@dataclass(frozen=True)
class QBDirection:
    """Dynamic inverted softmax knobs for one direction."""

    beta: float  # inverse temperature of the softmax
    k: int  # an item is a querybank hit if it is in a querybank query's top-k ...
    theta: int  # ... for at least theta querybank queries (then it is in the activation set)

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.theta < 1:
            raise ValueError(f"theta must be >= 1, got {self.theta}")


@dataclass(frozen=True)
class QBParams:
    """QB-Norm knobs per direction (official DiCoSA / MAC-VR: beta 70, k 1, theta 3 t2v / 5 v2t;
    QB-Norm's own paper: beta 20, theta 1)."""

    t2v: QBDirection
    v2t: QBDirection


@register_strategy
class QueryBankNorm(Strategy):
    name, label = "qb", "QB-Norm"
    description = "querybank normalisation, dynamic inverted softmax (needs training-split querybanks)"
    params_type = QBParams
    needs_querybank = True

    @classmethod
    def reference(cls) -> QBParams:
        return QBParams(t2v=QBDirection(beta=70.0, k=1, theta=3), v2t=QBDirection(beta=70.0, k=1, theta=5))

    def apply(self, sim: np.ndarray, direction: Direction, params: QBParams,
              querybank: np.ndarray | None = None) -> Rescored:
        if querybank is None:
            raise ValueError("QB-Norm needs a querybank (training queries scored against the same gallery)")
        p = params.t2v if direction == "t2v" else params.v2t
        scores, info = qb_norm_with_info(sim, querybank, p.beta, p.k, p.theta)
        if info["normalised_queries"] == 0:
            log.warning("QB-Norm %s: the querybank (%d queries) activated %d of %d gallery items and no test "
                        "query was normalised, so 'qb' equals 'none' (a larger querybank or a lower theta "
                        "would change that)", direction, info["querybank_queries"], info["active_items"],
                        info["gallery_items"])
        return Rescored(scores, info)
