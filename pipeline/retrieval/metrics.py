"""Ranks of the ground truth and the usual retrieval metrics (R@k, MdR, MnR).

Orientation: a score matrix has one row per *query* and one column per gallery item; higher
scores rank first. Text-to-video uses ``S`` (rows = captions, columns = videos); video-to-text
uses ``S.T`` (rows = videos, columns = captions).

Ground truth is ``caption_video[i]`` = the video column of caption ``i``, so several captions
may share a video (multi-caption test sets). In t2v each caption has exactly one relevant video.
In v2t a video query has one or more relevant captions and its rank is the *best* rank among
them (the VSE / collaborative-experts convention): a video is a hit at k if any of its captions
is in the top k.

Ties (exactly equal scores) follow one policy, chosen by ``ties``:

- ``"optimistic"`` (default): rank = 1 + number of items scoring strictly higher. Without ties
  this is exactly what the CLIP4Clip / DiCoSA / MAC-VR ``compute_metrics`` reports. It flatters
  a degenerate model (a constant matrix scores R@1 = 100).
- ``"pessimistic"``: rank = 1 + strictly higher + the *other* items tied with the ground truth.
- ``"average"``: the mean of the two, i.e. the expected rank under a uniformly random order of
  the tied block (McSherry & Najork, 2008); ranks may then be half-integers.
- ``"official"``: what the official ``compute_metrics`` computes, ties included. It sorts each
  row, finds *every* position whose score equals the ground truth's, and pools those positions
  over all queries: a query whose ground truth ties with ``t`` other items contributes ``t + 1``
  entries (the optimistic rank, then each following tied position), and R@k, MdR and MnR are
  taken over the pooled list (a constant 100 x 100 matrix gives R@1 = 1.0, not 100). Per-query
  ranks (rank tables, intervals) are the optimistic ones under this policy; only the summary
  metrics are pooled. Without ties it equals ``"optimistic"``.

NaN scores raise (they have no order); ``±inf`` are allowed and order as expected (``-inf`` is
a legitimate "never retrieve" mask).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

TiePolicy = Literal["optimistic", "pessimistic", "average", "official"]
TIE_POLICIES: tuple[str, ...] = get_args(TiePolicy)
RECALL_KS: tuple[int, ...] = (1, 5, 10, 50)
METRIC_KEYS: tuple[str, ...] = tuple(f"R{k}" for k in RECALL_KS) + ("MdR", "MnR")

# Rows are compared in blocks of about this many entries so the boolean temporaries stay small
# (16 M entries = 16 MiB per mask) whatever the gallery size.
_BLOCK_ENTRIES = 1 << 24


def check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a 2-D real array, or raise ``ValueError`` naming ``name``.

    Refuses non-2-D, empty, non-numeric (bool, complex, object) arrays and NaN entries.
    """
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D score matrix, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: empty score matrix of shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected real numbers (float or int), got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        nan = np.isnan(arr)
        if nan.any():
            first = tuple(int(x) for x in np.argwhere(nan)[0])
            raise ValueError(f"{name}: {int(nan.sum())} NaN score(s), first at (row, col) = {first}")
    return arr


def check_caption_video(caption_video: np.ndarray, n_captions: int, n_videos: int,
                        name: str = "caption_video") -> np.ndarray:
    """Validate the ground truth: ``n_captions`` integer video indices in ``[0, n_videos)``."""
    gt = np.asarray(caption_video)
    if gt.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of video indices, got shape {gt.shape}")
    if gt.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer video indices, got dtype {gt.dtype}")
    if gt.shape[0] != n_captions:
        raise ValueError(f"{name}: has {gt.shape[0]} entries but there are {n_captions} captions")
    bad = (gt < 0) | (gt >= n_videos)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {int(gt[i])} is not a video index in [0, {n_videos})")
    return gt.astype(np.int64, copy=False)


def diagonal_ground_truth(sim: np.ndarray) -> np.ndarray:
    """``caption_video`` for a square matrix whose ground truth is the diagonal."""
    n_rows, n_cols = np.shape(sim)
    if n_rows != n_cols:
        raise ValueError(f"ground truth on the diagonal needs a square matrix, got {n_rows}x{n_cols}; "
                         "give each row's ground-truth column explicitly")
    return np.arange(n_rows, dtype=np.int64)


def _ranks_of_scores(sim: np.ndarray, target: np.ndarray, ties: TiePolicy) -> tuple[np.ndarray, np.ndarray]:
    """Rank of score ``target[r]`` within row ``r``; also how many other items tie with it."""
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties: {ties!r} is not one of {list(TIE_POLICIES)}")
    n_rows, n_cols = sim.shape
    greater = np.empty(n_rows, dtype=np.int64)
    equal = np.empty(n_rows, dtype=np.int64)
    step = max(1, _BLOCK_ENTRIES // n_cols)
    for start in range(0, n_rows, step):
        block = sim[start:start + step]
        t = target[start:start + step, None]
        greater[start:start + step] = np.count_nonzero(block > t, axis=1)
        equal[start:start + step] = np.count_nonzero(block == t, axis=1)
    others = equal - 1  # the target itself is one of the equal entries
    if ties in ("optimistic", "official"):  # official pools the tied positions in rank_metrics
        ranks = 1.0 + greater
    elif ties == "pessimistic":
        ranks = 1.0 + greater + others
    else:
        ranks = 1.0 + greater + others / 2.0
    return ranks.astype(np.float64), others


def ranks_t2v(sim: np.ndarray, caption_video: np.ndarray | None = None, ties: TiePolicy = "optimistic",
              return_ties: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """1-based rank of each caption's video in its row of ``sim`` (captions x videos).

    ``caption_video=None`` means the diagonal (square ``sim``). Returns float64 ranks (integers
    unless ``ties="average"``); with ``return_ties`` also the number of other videos tied with
    the ground truth per query (a diagnostic: non-zero means the tie policy mattered).
    """
    sim = check_scores(sim, "sim")
    gt = diagonal_ground_truth(sim) if caption_video is None else \
        check_caption_video(caption_video, sim.shape[0], sim.shape[1])
    target = sim[np.arange(sim.shape[0]), gt]
    ranks, others = _ranks_of_scores(sim, target, ties)
    return (ranks, others) if return_ties else ranks


def ranks_v2t(sim_v2t: np.ndarray, caption_video: np.ndarray | None = None, ties: TiePolicy = "optimistic",
              return_ties: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """1-based rank of each video's best-ranked caption in its row of ``sim_v2t`` (videos x captions).

    Pass ``S.T`` for a t2v matrix ``S``, or a matrix already in v2t orientation (e.g. QB-Norm's
    v2t output). Every video must have at least one caption: a video query without a relevant
    item has no rank, so it raises rather than silently leaving the query out.
    """
    sim_v2t = check_scores(sim_v2t, "sim_v2t")
    n_videos, n_captions = sim_v2t.shape
    gt = diagonal_ground_truth(sim_v2t) if caption_video is None else \
        check_caption_video(caption_video, n_captions, n_videos)
    orphans = np.flatnonzero(np.bincount(gt, minlength=n_videos) == 0)
    if orphans.size:
        raise ValueError(f"video-to-text needs at least one caption per video; {orphans.size} video(s) "
                         f"have none, first column {int(orphans[0])}")
    # The best-ranked relevant caption is the one with the highest score under every tie
    # policy (a lower score has at least as many items above it, plus the higher one).
    # Kept in the matrix's own dtype so the comparisons below are exact (no float64 round trip).
    lowest = -np.inf if sim_v2t.dtype.kind == "f" else np.iinfo(sim_v2t.dtype).min
    target = np.full(n_videos, lowest, dtype=sim_v2t.dtype)
    np.maximum.at(target, gt, sim_v2t[gt, np.arange(n_captions)])
    ranks, others = _ranks_of_scores(sim_v2t, target, ties)
    return (ranks, others) if return_ties else ranks


def official_rank_list(ranks: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """The official ``compute_metrics`` pooled list: query q (optimistic rank r, t other tied
    items) contributes r, r+1, ..., r+t."""
    ranks = np.asarray(ranks, dtype=np.float64)
    tied = np.asarray(tied, dtype=np.int64)
    if ranks.shape != tied.shape:
        raise ValueError(f"ranks {ranks.shape} and tied counts {tied.shape} differ in shape")
    counts = tied + 1
    starts = np.repeat(ranks, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts + offsets


def rank_metrics(ranks: np.ndarray, tied: np.ndarray | None = None) -> dict[str, float]:
    """R@1/5/10/50 in percent (0-100, like the papers' tables), median rank MdR, mean rank MnR.

    R@k is the share of queries whose rank is <= k. With ``tied`` (the ``"official"`` policy:
    per-query counts of other items tied with the ground truth) the metrics are taken over the
    pooled list of :func:`official_rank_list`.
    """
    if tied is not None:
        ranks = official_rank_list(ranks, tied)
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks: expected a non-empty 1-D array, got shape {ranks.shape}")
    if np.isnan(ranks).any() or (ranks < 1).any():
        raise ValueError("ranks: expected 1-based ranks (>= 1, no NaN)")
    out = {f"R{k}": float(100.0 * np.count_nonzero(ranks <= k) / ranks.size) for k in RECALL_KS}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    return out
