"""How sure a retrieval number is: cluster bootstrap intervals and paired comparisons.

Test queries are not independent when a video has several captions (MSR-VTT: 20 per video in
the full test set; the synthetic set: 5), so the bootstrap resamples *videos* with all their
captions (a cluster bootstrap), for both directions: a resample is a multiset of test videos,
and every metric is recomputed over the queries of the drawn videos, each counted as often as
its video was drawn. The gallery is not resampled: ranks stay those of the full test gallery.

Vectorised: a resample is a vector of per-video draw counts ``W[b]`` (multinomial), and R@k and
the mean rank are ratios of ``W @ per-video sums``; the median uses one weighted sort. 1000
resamples of a 1k x 1k test set take well under a second.

Paired comparisons reuse the same draws for both variants, so the difference's interval reflects
only how the variants disagree on the same queries. Its p-value comes from the same test as the
interval: the percentile-interval test of a zero difference, inverted (:func:`percentile_p`: the
smallest α at which the (1 - α) percentile interval excludes 0, never below the resolution 2/B of
B resamples), so "interval excludes 0" and "p < 1 - level" agree at every level below 1 - 2/B.
Across many cells, :func:`holm` adjusts the p-values of a family.

Ranks under the ``official`` tie policy enter as the pooled tied positions (see
:func:`pipeline.retrieval.metrics.official_rank_list`), each tied to its query's video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.retrieval.metrics import RECALL_KS

METRICS = tuple(f"R{k}" for k in RECALL_KS) + ("MdR", "MnR")
LOWER_IS_BETTER = frozenset({"MdR", "MnR"})


@dataclass(frozen=True)
class BootstrapConfig:
    """Cluster-bootstrap settings: ``resamples`` seeded draws of the test videos (with all their
    captions); ``level`` is the intervals' coverage. Shared by ``evaluate`` (intervals) and
    ``compare`` (paired differences)."""

    resamples: int
    seed: int
    level: float

    def __post_init__(self) -> None:
        if self.resamples < 100:
            raise ValueError(f"bootstrap.resamples must be >= 100, got {self.resamples}")
        if not 0.5 <= self.level < 1:
            raise ValueError(f"bootstrap.level must be in [0.5, 1), got {self.level}")


@dataclass(frozen=True)
class Entries:
    """Ranks to summarise, each with the cluster (test video) it belongs to."""

    ranks: np.ndarray     # float64 [E]
    clusters: np.ndarray  # int64 [E], in [0, n_clusters)
    n_clusters: int

    @classmethod
    def of(cls, ranks: np.ndarray, clusters: np.ndarray, n_clusters: int,
           tied: np.ndarray | None = None) -> "Entries":
        """Per-query ranks (and, for the official tie policy, per-query tie counts)."""
        ranks = np.asarray(ranks, dtype=np.float64)
        clusters = np.asarray(clusters, dtype=np.int64)
        if ranks.shape != clusters.shape:
            raise ValueError(f"ranks {ranks.shape} and clusters {clusters.shape} differ in shape")
        if tied is not None:
            counts = np.asarray(tied, dtype=np.int64) + 1
            starts = np.repeat(ranks, counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            ranks, clusters = starts + offsets, np.repeat(clusters, counts)
        return cls(ranks, clusters, int(n_clusters))


def draws(n_clusters: int, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap draw counts ``[resamples, n_clusters]`` (each row sums to ``n_clusters``)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=resamples).astype(np.float64)


def point_metrics(entries: Entries) -> dict[str, float]:
    """The metrics themselves (weights all 1)."""
    return {k: float(v[0]) for k, v in weighted_metrics(entries, np.ones((1, entries.n_clusters))).items()}


def weighted_metrics(entries: Entries, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric under each row of cluster ``weights`` ``[B, n_clusters]`` -> ``{metric: [B]}``."""
    w = weights[:, entries.clusters]  # [B, E] weight of each entry
    total = w.sum(axis=1)
    if np.any(total <= 0):
        raise ValueError("a resample has no query (empty cluster draw)")
    out = {f"R{k}": 100.0 * (w @ (entries.ranks <= k).astype(np.float64)) / total for k in RECALL_KS}
    out["MnR"] = (w @ entries.ranks) / total
    out["MdR"] = _weighted_median(entries.ranks, w, total)
    return out


def _weighted_median(values: np.ndarray, w: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The median of ``values`` repeated ``w[b]`` times (integer weights), per row b: the mean of
    the two middle elements for an even count, as ``np.median`` of the expanded list."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    cum = np.cumsum(w[:, order], axis=1)  # [B, E]
    lower = np.floor((total - 1) / 2)  # 0-based positions of the middle element(s)
    upper = np.floor(total / 2)
    lo = np.argmax(cum > lower[:, None], axis=1)
    hi = np.argmax(cum > upper[:, None], axis=1)
    return (sorted_values[lo] + sorted_values[hi]) / 2


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples``."""
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _level_at_or_below_zero(ascending: np.ndarray) -> float:
    """``sup{q in [0, 1]: Q(q) <= 0}`` for ``Q`` the quantile function :func:`interval` uses
    (np.quantile's default: linear between the sorted samples, ``Q(i / (n - 1)) = x_(i)``);
    0 when every sample is > 0 (no level reaches 0), 1 when every sample is <= 0."""
    n = len(ascending)
    j = int(np.searchsorted(ascending, 0.0, side="right"))  # samples <= 0
    if j == 0:
        return 0.0
    if j == n:
        return 1.0
    below, above = ascending[j - 1], ascending[j]  # Q crosses 0 between these two knots
    return float((j - 1 + (-below) / (above - below)) / (n - 1))


def percentile_p(samples: np.ndarray) -> float:
    """Two-sided p-value of a zero difference by inverting the percentile interval of ``samples``:
    the smallest α at which :func:`interval` ``(samples, 1 - α)`` excludes 0, floored at the
    bootstrap's resolution 2/B (:func:`p_resolution`, B = ``len(samples)``).

    ``lo = Q(α/2) > 0`` iff ``α > 2 F_lo`` with ``F_lo = sup{q: Q(q) <= 0}``, and ``hi = Q(1 - α/2) < 0``
    iff ``α > 2 F_hi`` with ``F_hi = 1 - inf{q: Q(q) >= 0}`` (``F_lo`` of the negated samples), so
    ``p = min(1, max(2/B, 2 min(F_lo, F_hi)))``. For every level L < 1 - 2/B the interval excludes 0
    iff ``p < 1 - L`` (up to float rounding when ``1 - L`` equals p exactly, e.g. ties at 0 on a knot).
    Both sides are taken, not only the point difference's side, so this holds even when a skewed
    bootstrap puts the whole interval on the other side of 0.

    The floor: below ``2/B`` the crossing of 0 lies between the two most extreme resamples or
    beyond all of them (every resample strictly on one side: the unfloored value is 0), which the
    B resamples do not resolve; so such a p is reported as 2/B, an upper bound (two-sided: as if
    one resample lay beyond 0), never as 0. Levels L >= 1 - 2/B lie in that unresolved range too,
    and there the interval may exclude 0 while p = 2/B does not go below 1 - L. Every sample 0
    (identical variants): p = 1.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    if len(x) == 0:
        raise ValueError("no bootstrap samples")
    lower = _level_at_or_below_zero(x)
    upper = _level_at_or_below_zero(-x[::-1])  # the negated samples, ascending
    return float(min(1.0, max(p_resolution(len(x)), 2.0 * min(lower, upper))))


def p_resolution(resamples: int) -> float:
    """2/B, the smallest p :func:`percentile_p` reports: below it the crossing of 0 rests on at most
    about one of the B resamples, so the value is an upper bound (shown as ``<= 2/B``)."""
    return 2.0 / resamples


def alpha_of(level: float) -> float:
    """The significance level ``1 - level`` without float noise (``1 - 0.95`` is 0.050000000000000044),
    so that "p < 0.05" means what it says for a p of exactly 0.05 (e.g. Holm's 10 x 2/400)."""
    return round(1.0 - level, 12)


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values of one family, in the input order: with the m p-values
    sorted ascending, ``adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))`` (1-based i). Rejecting
    where ``adj < α`` controls the family-wise error rate at α under any dependence."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))  # monotone: never below an earlier step
    return [float(v) for v in adjusted]


def bootstrap_metrics(entries: Entries, weights: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """``{metric, metric_lo, metric_hi}`` for every metric: the value and its percentile interval."""
    point = point_metrics(entries)
    boot = weighted_metrics(entries, weights)
    out: dict[str, float] = {}
    for name in METRICS:
        lo, hi = interval(boot[name], level)
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = point[name], lo, hi
    return out


def paired_difference(a: Entries, b: Entries, weights: np.ndarray, level: float = 0.95) -> dict[str, dict]:
    """``{metric: {diff, lo, hi, p}}`` of metric(a) - metric(b) on the same queries and draws.

    ``lo, hi``: the percentile interval at ``level``; ``p``: the same percentile-interval test
    inverted (:func:`percentile_p`), so ``lo > 0 or hi < 0`` iff ``p < 1 - level`` (for any
    ``level < 1 - 2/B``, B = the resamples; p >= 2/B always)."""
    if a.n_clusters != b.n_clusters:
        raise ValueError(f"paired comparison over different test sets ({a.n_clusters} vs {b.n_clusters} videos)")
    pa, pb = point_metrics(a), point_metrics(b)
    ba, bb = weighted_metrics(a, weights), weighted_metrics(b, weights)
    out = {}
    for name in METRICS:
        diff = pa[name] - pb[name]
        samples = ba[name] - bb[name]
        lo, hi = interval(samples, level)
        out[name] = {"diff": float(diff), "lo": lo, "hi": hi, "p": percentile_p(samples)}
    return out
