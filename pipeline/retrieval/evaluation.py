"""All retrieval metrics of one similarity matrix: t2v and v2t x {none, dsl, qb}.

``evaluate_all`` is what the evaluate stage and ``macvr metrics`` call; its knobs are one
frozen config (:class:`RetrievalConfig`), loaded from params.yaml by the stage.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from pipeline.retrieval.metrics import (TIE_POLICIES, TiePolicy, check_caption_video, check_scores,
                                        diagonal_ground_truth, rank_metrics, ranks_t2v, ranks_v2t)
from pipeline.retrieval.strategies import dsl, qb_norm


class TiedGroundTruthWarning(UserWarning):
    """Some queries' ground truth scored exactly like another item: the tie policy decided."""


@dataclass(frozen=True)
class QBNormConfig:
    """Dynamic inverted softmax knobs for one direction (see ``strategies.qb_norm``)."""

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
class DSLConfig:
    """Dual-softmax temperatures, one per direction."""

    t2v_temp: float
    v2t_temp: float

    def __post_init__(self) -> None:
        for name in ("t2v_temp", "v2t_temp"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class RetrievalConfig:
    """Everything that turns a similarity matrix into metrics."""

    ties: TiePolicy  # optimistic | pessimistic | average (see ``pipeline.retrieval.metrics``)
    dsl: DSLConfig
    qb_t2v: QBNormConfig
    qb_v2t: QBNormConfig

    def __post_init__(self) -> None:
        if self.ties not in TIE_POLICIES:
            raise ValueError(f"ties must be one of {list(TIE_POLICIES)}, got {self.ties!r}")


# The official DiCoSA / MAC-VR evaluation settings (their main_retrieval.py argument defaults).
MACVR_REFERENCE = RetrievalConfig(
    ties="optimistic",
    dsl=DSLConfig(t2v_temp=0.01, v2t_temp=0.01),
    qb_t2v=QBNormConfig(beta=70.0, k=1, theta=3),
    qb_v2t=QBNormConfig(beta=70.0, k=1, theta=5),
)


def strategy_ranks(sim_t2v: np.ndarray, caption_video: np.ndarray | None = None,
                   querybank_t2v: np.ndarray | None = None, querybank_v2t: np.ndarray | None = None,
                   *, config: RetrievalConfig) -> dict[str, dict[str, np.ndarray]]:
    """Per-query 1-based ranks ``{"t2v": {"none", "dsl"[, "qb"]}, "v2t": {...}}``.

    ``sim_t2v``: captions x videos. ``caption_video``: each caption's video column (None = the
    diagonal). ``querybank_t2v``: querybank captions x the same videos. ``querybank_v2t``:
    querybank videos x the same test captions. A direction gets ``"qb"`` only when its querybank
    is given. t2v ranks are per caption, v2t ranks per video (best of its captions).
    """
    sim = check_scores(sim_t2v, "sim_t2v")
    n_captions, n_videos = sim.shape
    gt = diagonal_ground_truth(sim) if caption_video is None else \
        check_caption_video(caption_video, n_captions, n_videos)
    for name, bank, width, what in (("querybank_t2v", querybank_t2v, n_videos, "videos"),
                                    ("querybank_v2t", querybank_v2t, n_captions, "captions")):
        if bank is not None:
            shape = np.shape(bank)
            if len(shape) != 2 or shape[1] != width:
                raise ValueError(f"{name}: expected shape (M, {width}) (M querybank queries x the "
                                 f"{width} test {what}), got {shape}")

    # Each re-scored matrix is built just before it is ranked and dropped after, so at most one
    # float64 copy of the gallery is alive at a time.
    jobs = [("t2v", "none", lambda: sim), ("t2v", "dsl", lambda: dsl(sim, config.dsl.t2v_temp))]
    if querybank_t2v is not None:
        qb_t = config.qb_t2v
        jobs.append(("t2v", "qb", lambda: qb_norm(sim, querybank_t2v, qb_t.beta, qb_t.k, qb_t.theta)))
    jobs += [("v2t", "none", lambda: sim.T), ("v2t", "dsl", lambda: dsl(sim.T, config.dsl.v2t_temp))]
    if querybank_v2t is not None:
        qb_v = config.qb_v2t
        jobs.append(("v2t", "qb", lambda: qb_norm(sim.T, querybank_v2t, qb_v.beta, qb_v.k, qb_v.theta)))

    out: dict[str, dict[str, np.ndarray]] = {"t2v": {}, "v2t": {}}
    for direction, strategy, build in jobs:
        rank_fn = ranks_t2v if direction == "t2v" else ranks_v2t
        ranks, tied = rank_fn(build(), gt, config.ties, return_ties=True)
        n_tied = int(np.count_nonzero(tied))
        if n_tied:
            warnings.warn(f"{direction}/{strategy}: {n_tied} of {tied.size} queries have their "
                          f"ground truth tied with another item; ranks use the "
                          f"'{config.ties}' tie policy", TiedGroundTruthWarning, stacklevel=3)
        out[direction][strategy] = ranks
    return out


def evaluate_all(sim_t2v: np.ndarray, caption_video: np.ndarray | None = None,
                 querybank_t2v: np.ndarray | None = None, querybank_v2t: np.ndarray | None = None,
                 *, config: RetrievalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics ``{"t2v": {"none": {...}, "dsl": {...}[, "qb": {...}]}, "v2t": {...}}``.

    Each leaf has R1, R5, R10, R50 (percent, 0-100), MdR and MnR. Arguments as in
    :func:`strategy_ranks`.
    """
    ranks = strategy_ranks(sim_t2v, caption_video, querybank_t2v, querybank_v2t, config=config)
    return {direction: {strategy: rank_metrics(r) for strategy, r in by_strategy.items()}
            for direction, by_strategy in ranks.items()}
