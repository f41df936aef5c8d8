"""All retrieval metrics of one similarity matrix: t2v and v2t x every requested strategy.

Strategies come from the registry (:data:`pipeline.retrieval.strategies.STRATEGIES`); which
ones run, with which knobs, is one frozen config (:class:`RetrievalConfig`, ``params.yaml:
evaluate.retrieval``). ``evaluate_all`` is what ``macvr metrics`` calls; the evaluate stage uses
:func:`rank_all` for the per-query ranks and the strategies' diagnostics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config import registry_field
from pipeline.retrieval.metrics import (TIE_POLICIES, TiePolicy, check_caption_video, check_scores,
                                        diagonal_ground_truth, rank_metrics, ranks_t2v, ranks_v2t)
from pipeline.retrieval.strategies import DIRECTIONS, STRATEGIES, Direction


class TiedGroundTruthWarning(UserWarning):
    """Some queries' ground truth scored exactly like another item: the tie policy decided."""


def _strategies():
    return STRATEGIES


@dataclass(frozen=True)
class RetrievalConfig:
    """Everything that turns a similarity matrix into metrics.

    ties: optimistic | pessimistic | average | official (see :mod:`pipeline.retrieval.metrics`).
    strategies: ``{name: knobs}`` of the registered strategies to evaluate, in report order.
    """

    ties: TiePolicy
    strategies: dict[str, Any] = registry_field(_strategies)

    def __post_init__(self) -> None:
        if self.ties not in TIE_POLICIES:
            raise ValueError(f"ties must be one of {list(TIE_POLICIES)}, got {self.ties!r}")
        if not self.strategies:
            raise ValueError("strategies must name at least one registered strategy")
        for name, params in self.strategies.items():
            want = STRATEGIES.get(name).params_type
            if not isinstance(params, want):
                raise ValueError(f"strategies.{name}: expected {want.__name__}, got {type(params).__name__}")

    @property
    def needs_querybank(self) -> bool:
        return any(STRATEGIES.get(name).needs_querybank for name in self.strategies)


def reference_config(ties: TiePolicy = "optimistic", names: tuple[str, ...] | None = None) -> RetrievalConfig:
    """Every registered strategy (or ``names``) at the official MAC-VR evaluation settings."""
    names = STRATEGIES.names() if names is None else names
    return RetrievalConfig(ties=ties, strategies={n: STRATEGIES.get(n).reference() for n in names})


@dataclass
class RankedRetrieval:
    """Per-query ranks of every direction and strategy, with tie counts and strategy diagnostics.

    ``ranks[direction][strategy]``: 1-based ranks (t2v per caption, v2t per video);
    ``tied``: how many other items tie with each query's ground truth; ``info``: what each
    strategy reported (e.g. QB-Norm activation counts); ``skipped``: strategies left out of a
    direction and why (e.g. no querybank).
    """

    ties: TiePolicy
    ranks: dict[str, dict[str, np.ndarray]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})
    tied: dict[str, dict[str, np.ndarray]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})
    info: dict[str, dict[str, dict]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})
    skipped: dict[str, dict[str, str]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{direction: {strategy: {R1, R5, R10, R50, MdR, MnR}}}``."""
        official = self.ties == "official"
        return {d: {s: rank_metrics(r, self.tied[d][s] if official else None) for s, r in by.items()}
                for d, by in self.ranks.items()}


def rank_all(sim_t2v: np.ndarray, caption_video: np.ndarray | None = None,
             querybank_t2v: np.ndarray | None = None, querybank_v2t: np.ndarray | None = None,
             *, config: RetrievalConfig) -> RankedRetrieval:
    """Rank every direction under every configured strategy.

    ``sim_t2v``: captions x videos. ``caption_video``: each caption's video column (None = the
    diagonal). ``querybank_t2v``: querybank captions x the same videos; ``querybank_v2t``:
    querybank videos x the same test captions. A strategy that needs a querybank is skipped (and
    listed in ``skipped``) in a direction without one. Each re-scored matrix is built just before
    it is ranked and dropped after, so at most one float64 copy of the gallery is alive at a time.
    """
    sim = check_scores(sim_t2v, "sim_t2v")
    n_captions, n_videos = sim.shape
    gt = diagonal_ground_truth(sim) if caption_video is None else \
        check_caption_video(caption_video, n_captions, n_videos)
    banks = {"t2v": querybank_t2v, "v2t": querybank_v2t}
    for name, bank, width, what in (("querybank_t2v", querybank_t2v, n_videos, "videos"),
                                    ("querybank_v2t", querybank_v2t, n_captions, "captions")):
        if bank is not None:
            shape = np.shape(bank)
            if len(shape) != 2 or shape[1] != width:
                raise ValueError(f"{name}: expected shape (M, {width}) (M querybank queries x the "
                                 f"{width} test {what}), got {shape}")
    out = RankedRetrieval(ties=config.ties)
    for direction in DIRECTIONS:
        matrix = sim if direction == "t2v" else sim.T
        rank_fn = ranks_t2v if direction == "t2v" else ranks_v2t
        for name, params in config.strategies.items():
            strategy = STRATEGIES.get(name)
            bank = banks[direction]
            if strategy.needs_querybank and bank is None:
                out.skipped[direction][name] = "no querybank"
                continue
            rescored = strategy.apply(matrix, direction, params, bank)
            ranks, tied = rank_fn(rescored.scores, gt, config.ties, return_ties=True)
            n_tied = int(np.count_nonzero(tied))
            if n_tied:
                warnings.warn(f"{direction}/{name}: {n_tied} of {tied.size} queries have their "
                              f"ground truth tied with another item; ranks use the "
                              f"'{config.ties}' tie policy", TiedGroundTruthWarning, stacklevel=2)
            out.ranks[direction][name] = ranks
            out.tied[direction][name] = tied
            out.info[direction][name] = dict(rescored.info)
            del rescored  # one re-scored gallery copy alive at a time
    return out


def strategy_ranks(sim_t2v: np.ndarray, caption_video: np.ndarray | None = None,
                   querybank_t2v: np.ndarray | None = None, querybank_v2t: np.ndarray | None = None,
                   *, config: RetrievalConfig) -> dict[str, dict[str, np.ndarray]]:
    """Per-query 1-based ranks ``{"t2v": {strategy: ranks}, "v2t": {...}}`` (see :func:`rank_all`)."""
    return rank_all(sim_t2v, caption_video, querybank_t2v, querybank_v2t, config=config).ranks


def evaluate_all(sim_t2v: np.ndarray, caption_video: np.ndarray | None = None,
                 querybank_t2v: np.ndarray | None = None, querybank_v2t: np.ndarray | None = None,
                 *, config: RetrievalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics ``{"t2v": {strategy: {...}}, "v2t": {...}}``; each leaf has R1, R5, R10, R50
    (percent, 0-100), MdR and MnR. Arguments as in :func:`rank_all`."""
    return rank_all(sim_t2v, caption_video, querybank_t2v, querybank_v2t, config=config).metrics()


def strategy_label(name: str) -> str:
    """Display label of a registered strategy (the name itself if unknown)."""
    return STRATEGIES.get(name).label if name in STRATEGIES else name


def direction_items(direction: Direction) -> str:
    return "captions" if direction == "t2v" else "videos"
