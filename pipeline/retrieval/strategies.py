"""Inference strategies that re-score a similarity matrix before ranking: DSL and QB-Norm.

Both take a matrix in *query orientation* (rows = queries, columns = gallery items) and return a
float64 matrix of the same shape that is ranked row by row like the input. For text-to-video pass
``S`` (captions x videos); for video-to-text pass ``S.T`` (videos x captions) and, for QB-Norm,
the v2t querybank (querybank videos x the same test captions).

Inputs must be finite: both strategies exponentiate the scores, so ``inf`` would turn into NaN.
Everything is computed in float64 whatever the input dtype, blockwise so the temporaries stay
bounded for galleries of several thousand items.
"""

from __future__ import annotations

import numpy as np

from pipeline.retrieval.metrics import check_scores

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
    return out
