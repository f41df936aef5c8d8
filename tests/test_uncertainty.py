"""Cluster bootstrap intervals and paired comparisons (pipeline.retrieval.uncertainty) against
closed forms, brute force, and simulated test sets."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.retrieval.metrics import official_rank_list, rank_metrics
from pipeline.retrieval.uncertainty import (METRICS, Entries, _weighted_median, bootstrap_metrics, draws, holm,
                                            interval, p_resolution, paired_difference, percentile_p, point_metrics,
                                            weighted_metrics)


def test_draws_are_seeded_multinomial_counts():
    w = draws(50, 200, seed=3)
    assert w.shape == (200, 50) and np.all(w.sum(axis=1) == 50) and np.all(w == np.round(w)) and w.min() >= 0
    np.testing.assert_array_equal(w, draws(50, 200, seed=3))
    assert not np.array_equal(w, draws(50, 200, seed=4))
    # each video is drawn ~Binomial(V, 1/V) times: mean 1
    assert w.mean() == pytest.approx(1.0) and w.var() == pytest.approx(1 - 1 / 50, rel=0.1)


def test_point_metrics_equal_rank_metrics():
    rng = np.random.default_rng(0)
    ranks = rng.integers(1, 80, size=300).astype(float)
    clusters = rng.integers(0, 60, size=300)
    clusters[:60] = np.arange(60)  # every cluster has a query
    got = point_metrics(Entries.of(ranks, clusters, 60))
    assert set(got) == set(METRICS)
    assert got == pytest.approx(rank_metrics(ranks))


def test_one_caption_per_video_matches_the_binomial_standard_error():
    """R@1 is a mean of Bernoulli hits: its bootstrap SE is sqrt(p (1 - p) / n) (in percent)."""
    rng = np.random.default_rng(1)
    n = 1000
    ranks = np.where(rng.random(n) < 0.3, 1.0, rng.integers(2, 50, size=n).astype(float))
    entries = Entries.of(ranks, np.arange(n), n)
    boot = weighted_metrics(entries, draws(n, 2000, seed=0))
    p = np.mean(ranks == 1)
    want = 100 * np.sqrt(p * (1 - p) / n)
    assert np.std(boot["R1"]) == pytest.approx(want, rel=0.1)
    assert np.mean(boot["R1"]) == pytest.approx(100 * p, abs=want / 5)
    # mean rank: SE = sd(ranks) / sqrt(n)
    assert np.std(boot["MnR"]) == pytest.approx(np.std(ranks) / np.sqrt(n), rel=0.1)


def test_equal_clusters_resample_videos_with_all_their_captions():
    """V videos of c captions: a resampled mean is the mean of V drawn cluster means, so its
    variance is the variance of the cluster means over V -- not that of the captions over V c."""
    rng = np.random.default_rng(2)
    V, c = 400, 5
    easy = rng.random(V) < 0.4  # hits shared by a video's captions (correlated within a cluster)
    hits = easy[:, None] & (rng.random((V, c)) < 0.9)
    ranks = np.where(hits, 1.0, 7.0).reshape(-1)
    clusters = np.repeat(np.arange(V), c)
    boot = weighted_metrics(Entries.of(ranks, clusters, V), draws(V, 2000, seed=1))
    cluster_means = 100 * hits.mean(axis=1)
    want = np.sqrt(np.var(cluster_means) / V)
    assert np.std(boot["R1"]) == pytest.approx(want, rel=0.1)
    iid = 100 * np.sqrt(hits.mean() * (1 - hits.mean()) / (V * c))
    assert want > 1.8 * iid  # so treating captions as independent would be clearly too narrow


def test_weighted_median_equals_the_median_of_the_expanded_list():
    rng = np.random.default_rng(3)
    for _ in range(200):
        e = int(rng.integers(1, 15))
        values = rng.integers(1, 8, size=e).astype(float) + rng.choice([0.0, 0.5], size=e)  # ties, halves
        w = rng.integers(0, 4, size=(5, e)).astype(float)
        w[w.sum(axis=1) == 0, 0] = 1.0  # a resample always has a query
        got = _weighted_median(values, w, w.sum(axis=1))
        want = [np.median(np.repeat(values, row.astype(int))) for row in w]
        np.testing.assert_array_equal(got, want)
    # through weighted_metrics: per-cluster weights spread to every entry of the cluster
    ranks = np.array([3.0, 1.0, 9.0, 4.0, 4.0, 2.0])
    clusters = np.array([0, 0, 1, 2, 2, 2])
    weights = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    got = weighted_metrics(Entries.of(ranks, clusters, 3), weights)["MdR"]
    expanded = [np.repeat(ranks, weights[b, clusters].astype(int)) for b in range(3)]
    np.testing.assert_array_equal(got, [np.median(x) for x in expanded])


def test_entries_of_tied_counts_is_the_official_pooled_list():
    rng = np.random.default_rng(4)
    ranks = rng.integers(1, 30, size=50).astype(float)
    tied = rng.integers(0, 4, size=50) * (rng.random(50) < 0.3)
    clusters = rng.integers(0, 20, size=50)
    entries = Entries.of(ranks, clusters, 20, tied)
    np.testing.assert_array_equal(entries.ranks, official_rank_list(ranks, tied))
    np.testing.assert_array_equal(entries.clusters, np.repeat(clusters, tied + 1))  # each entry keeps its video
    assert point_metrics(entries) == pytest.approx(rank_metrics(ranks, tied))
    untied = Entries.of(ranks, clusters, 20)
    np.testing.assert_array_equal(untied.ranks, ranks)
    with pytest.raises(ValueError, match="differ in shape"):
        Entries.of(ranks, clusters[:-1], 20)


def test_bootstrap_metrics_are_values_with_percentile_intervals():
    rng = np.random.default_rng(5)
    ranks = rng.geometric(0.2, size=240).astype(float)
    clusters = np.repeat(np.arange(80), 3)
    entries = Entries.of(ranks, clusters, 80)
    weights = draws(80, 500, seed=0)
    out = bootstrap_metrics(entries, weights, level=0.9)
    boot = weighted_metrics(entries, weights)
    for name in METRICS:
        assert out[name] == pytest.approx(rank_metrics(ranks)[name])
        lo, hi = np.quantile(boot[name], [0.05, 0.95])
        assert (out[f"{name}_lo"], out[f"{name}_hi"]) == pytest.approx((lo, hi))
        assert out[f"{name}_lo"] <= out[name] <= out[f"{name}_hi"]
    assert interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    with pytest.raises(ValueError, match="no query"):
        weighted_metrics(entries, np.zeros((1, 80)))


def _exchangeable_pair(rng: np.random.Generator, videos: int, captions: int) -> tuple[np.ndarray, np.ndarray]:
    """Two variants whose per-query ranks are iid draws from one distribution. Each video has
    its own easiness per variant, shared by its captions (correlated within a cluster)."""
    pa, pb = rng.uniform(0.05, 0.9, size=videos), rng.uniform(0.05, 0.9, size=videos)
    return (rng.geometric(np.repeat(pa, captions)).astype(float),
            rng.geometric(np.repeat(pb, captions)).astype(float))


def test_paired_test_false_positive_rate_on_exchangeable_variants():
    rng = np.random.default_rng(6)
    videos, captions, sets, resamples = 100, 3, 300, 300
    clusters = np.repeat(np.arange(videos), captions)
    rejected = {"R1": 0, "R5": 0, "MnR": 0}
    for s in range(sets):
        a, b = _exchangeable_pair(rng, videos, captions)
        out = paired_difference(Entries.of(a, clusters, videos), Entries.of(b, clusters, videos),
                                draws(videos, resamples, seed=s))
        for name in rejected:
            rejected[name] += out[name]["p"] < 0.05
            # one test: p < 0.05 exactly when the 95% interval excludes 0
            assert (out[name]["p"] < 0.05) == (out[name]["lo"] > 0 or out[name]["hi"] < 0), (s, name, out[name])
    rates = {name: count / sets for name, count in rejected.items()}
    for name, rate in rates.items():
        assert 0.02 <= rate <= 0.09, rates


def test_paired_test_detects_a_real_difference():
    rng = np.random.default_rng(7)
    videos, captions, sets = 100, 2, 100
    clusters = np.repeat(np.arange(videos), captions)
    rejected = 0
    for s in range(sets):
        better = rng.geometric(0.5, size=videos * captions).astype(float)
        worse = rng.geometric(0.3, size=videos * captions).astype(float)
        out = paired_difference(Entries.of(better, clusters, videos), Entries.of(worse, clusters, videos),
                                draws(videos, 300, seed=s))
        rejected += out["R1"]["p"] < 0.05 and out["R1"]["diff"] > 0 and out["R1"]["lo"] > 0
    assert rejected / sets >= 0.8


def test_paired_difference_values_and_pairing():
    rng = np.random.default_rng(8)
    clusters = np.repeat(np.arange(40), 2)
    a = rng.geometric(0.4, size=80).astype(float)
    b = a.copy()
    b[:10] += 3  # a is better on a few queries only
    weights = draws(40, 400, seed=1)
    out = paired_difference(Entries.of(a, clusters, 40), Entries.of(b, clusters, 40), weights)
    assert out["MnR"]["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert out["R1"]["diff"] == pytest.approx(100 * (np.mean(a == 1) - np.mean(b == 1)))
    samples = weighted_metrics(Entries.of(a, clusters, 40), weights)["MnR"] - \
        weighted_metrics(Entries.of(b, clusters, 40), weights)["MnR"]
    assert (out["MnR"]["lo"], out["MnR"]["hi"]) == pytest.approx(tuple(np.quantile(samples, [0.025, 0.975])))
    assert out["MnR"]["hi"] < 0  # paired: the shared queries cancel, only the 10 changed ones vary
    assert out["MnR"]["p"] == percentile_p(samples) and out["MnR"]["p"] < 0.05
    same = paired_difference(Entries.of(a, clusters, 40), Entries.of(a, clusters, 40), weights)
    assert all(d["diff"] == 0 and d["p"] == 1.0 for d in same.values())
    with pytest.raises(ValueError, match="different test sets"):
        paired_difference(Entries.of(a, clusters, 40), Entries.of(a[:78], clusters[:78], 39), weights)


def test_a_thousand_resamples_of_a_1k_test_set_take_well_under_a_second():
    rng = np.random.default_rng(9)
    ranks = rng.integers(1, 1000, size=1000).astype(float)
    entries = Entries.of(ranks, np.arange(1000), 1000)
    start = time.perf_counter()
    out = bootstrap_metrics(entries, draws(1000, 1000, seed=0))
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, elapsed  # loosely: well under a second on an idle core
    assert out["R1_lo"] <= out["R1"] <= out["R1_hi"]


def _inverted_by_bisection(samples: np.ndarray) -> float:
    """The smallest α at which ``interval(samples, 1 - α)`` excludes 0, found by bisecting on α with
    :func:`interval` itself (exclusion only grows with α: the interval shrinks)."""
    def excludes(alpha: float) -> bool:
        lo, hi = interval(samples, 1.0 - alpha)
        return lo > 0 or hi < 0

    if not excludes(1.0):
        return 1.0
    low, high = 0.0, 1.0  # excludes(high) holds throughout
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (low, mid) if excludes(mid) else (mid, high)
    return high


def _sample_sets(rng: np.random.Generator) -> list[np.ndarray]:
    """Bootstrap-like sample sets: continuous and shifted, discrete with many ties (recall steps of
    100/n, mean-rank steps), exact zeros, all equal, all on one side, tiny sizes."""
    sets = []
    for _ in range(150):
        n = int(rng.choice([1, 2, 3, 5, 50, 200, 401, 1000]))
        kind = rng.integers(6)
        if kind == 0:
            x = rng.normal(rng.normal(0, 1.5), 1.0, n)
        elif kind == 1:  # R@k differences on 60 queries: multiples of 100/60, ties and exact zeros
            x = (100 / 60) * rng.integers(-3, 6, n)
        elif kind == 2:  # a few distinct values only, mostly 0
            x = rng.choice([-1.0, 0.0, 0.0, 0.0, 0.5, 2.0], n) + rng.choice([0.0, 0.0, 0.5])
        elif kind == 3:
            x = np.full(n, rng.choice([0.0, 1.5, -2.0]))
        elif kind == 4:  # strictly one side, sometimes touching 0 once
            x = rng.choice([1.0, -1.0]) * rng.uniform(0.1, 3.0, n)
            x[0] = 0.0 if rng.random() < 0.5 else x[0]
        else:  # the median on the other side of 0 than the mean
            x = np.concatenate([rng.normal(-0.3, 0.1, n - n // 3), rng.normal(20, 1, n // 3)])
        sets.append(x)
    return sets


def test_percentile_p_is_the_inverted_percentile_interval():
    rng = np.random.default_rng(10)
    levels = np.concatenate([np.linspace(0.0, 0.999, 167), [0.5, 0.8, 0.9, 0.95, 0.99]])
    boundary = unresolved = checked = 0
    for x in _sample_sets(rng):
        p, floor = percentile_p(x), 2 / len(x)
        assert min(1.0, floor) <= p <= 1.0
        assert p == pytest.approx(min(1.0, max(floor, _inverted_by_bisection(x))), abs=1e-9), x
        assert percentile_p(-x) == pytest.approx(p, abs=1e-12)  # two-sided: the sign does not matter
        for level in levels:
            if 1 - level <= floor:  # the interval's ends rest on the most extreme resample: not claimed
                unresolved += 1
                continue
            if abs(p - (1 - level)) < 1e-9:  # exactly on the boundary: float rounding decides
                boundary += 1
                continue
            lo, hi = interval(x, level)
            assert (lo > 0 or hi < 0) == (p < 1 - level), (x, level, p, lo, hi)
            checked += 1
    assert checked > 12000 and boundary < 0.01 * checked


def test_percentile_p_by_hand():
    # never crossing 0 (excluded at every level): the floor 2/B, not 0
    assert percentile_p(np.arange(1.0, 1001.0)) == pytest.approx(0.002) == p_resolution(1000)
    assert percentile_p(-np.arange(1.0, 401.0)) == pytest.approx(0.005)
    assert percentile_p(np.full(400, 2.5)) == pytest.approx(0.005)
    assert percentile_p(np.zeros(7)) == 1.0  # identical variants
    assert percentile_p(np.array([3.0, -1.0])) == 1.0  # two resamples resolve nothing (floor 2/2)
    # 101 samples -1, 3, 3, ...: Q crosses 0 a quarter into the first step, q = 0.25 / 100: the inversion
    # 0.005 rests on the single most extreme resample, so p is the floor 2/101
    assert percentile_p(np.array([-1.0] + [3.0] * 100)) == pytest.approx(2 / 101)
    x = np.concatenate([[-40.0, -20.0, -1.0], np.arange(3.0, 101.0)])  # 101 samples; Q crosses 0 at
    assert percentile_p(x) == pytest.approx(2 * (2 + 1 / 4) / 100)    # h = 2 + 1/4: q = 0.0225, p = 0.045
    assert interval(x, 0.95)[0] > 0 and interval(x, 0.96)[0] <= 0
    x = np.arange(-1.0, 100.0)  # -1, 0, 1, ..., 99 (101 samples): Q(q) <= 0 up to q = 1/100
    assert percentile_p(x) == pytest.approx(0.02)
    assert interval(x, 0.97)[0] > 0 and interval(x, 0.99)[0] <= 0
    assert percentile_p(np.array([0.0, 0.0, 1.0, 2.0])) == pytest.approx(2 / 3)  # Q(q) = 0 up to q = 1/3
    with pytest.raises(ValueError, match="no bootstrap samples"):
        percentile_p(np.array([]))


def test_percentile_p_is_one_unless_the_interval_can_exclude_zero():
    # a symmetric set around 0: every interval contains 0
    assert percentile_p(np.array([-2.0, -1.0, 0.0, 1.0, 2.0])) == 1.0
    # the whole bootstrap on the other side of 0 than its mean: the interval (and so p) follows the samples
    x = np.array([-0.3] * 8 + [20.0] * 2)
    assert x.mean() > 0 and interval(x, 0.5)[1] < 0 and percentile_p(x) < 0.5


def _holm_rejections(p: np.ndarray, alpha: float) -> set[int]:
    """Holm's step-down procedure as stated: walk the p-values up; reject while p_(k) <= α / (m - k + 1)."""
    m, out = len(p), set()
    for k, i in enumerate(np.argsort(p), start=1):
        if p[i] > alpha / (m - k + 1):
            break
        out.add(int(i))
    return out


def test_holm_adjusted_p_values():
    # by hand: sorted 0.005, 0.01, 0.03, 0.04 -> x4 = 0.02, x3 = 0.03, x2 = 0.06, x1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6]) and holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == [0.02] and holm([]) == []
    assert holm([0.01, 0.01, 0.5]) == pytest.approx([0.03, 0.03, 0.5])  # ties: the same adjusted value
    rng = np.random.default_rng(11)
    for _ in range(200):
        m = int(rng.integers(1, 40))
        p = rng.uniform(0, 1, m) ** rng.choice([1, 3, 6])  # some families with many small p
        adj = np.array(holm(p))
        assert np.all(adj >= p - 1e-15) and np.all(adj <= np.minimum(1, m * p) + 1e-12)
        for alpha in (0.001, 0.01, 0.05, 0.1, 0.2):
            assert {int(i) for i in np.flatnonzero(adj <= alpha)} == _holm_rejections(p, alpha), (p, alpha)
