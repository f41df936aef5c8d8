"""Cluster bootstrap intervals and paired comparisons (pipeline.retrieval.uncertainty) against
closed forms, brute force, and simulated test sets."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.retrieval.metrics import official_rank_list, rank_metrics
from pipeline.retrieval.uncertainty import (METRICS, Entries, _weighted_median, bootstrap_metrics, draws, interval,
                                            paired_difference, point_metrics, weighted_metrics)


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
