"""Ground-truth ranks and R@k/MdR/MnR against brute force over sorted Python lists."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from pipeline.retrieval import metrics as metrics_mod
from pipeline.retrieval.metrics import TIE_POLICIES, rank_metrics, ranks_t2v, ranks_v2t


def brute_rank(row, relevant, ties):
    """Best rank of any item in ``relevant`` in ``row``, from the positions in a sorted list."""
    ordered = sorted((float(v) for v in row), reverse=True)
    best = None
    for item in relevant:
        score = float(row[item])
        positions = [p for p, v in enumerate(ordered) if v == score]  # the tied block, 0-based
        first, last = positions[0] + 1, positions[-1] + 1
        rank = {"optimistic": first, "official": first, "pessimistic": last, "average": (first + last) / 2}[ties]
        best = rank if best is None else min(best, rank)
    return best


def brute_t2v(sim, caption_video, ties):
    return [brute_rank(list(sim[i]), [caption_video[i]], ties) for i in range(sim.shape[0])]


def brute_v2t(sim, caption_video, ties):
    out = []
    for video in range(sim.shape[1]):
        captions = [i for i in range(sim.shape[0]) if caption_video[i] == video]
        out.append(brute_rank([sim[i, video] for i in range(sim.shape[0])], captions, ties))
    return out


def multi_caption_gt(rng, n_captions, n_videos):
    """Random caption->video map in which every video has at least one caption."""
    gt = np.concatenate([np.arange(n_videos), rng.integers(0, n_videos, n_captions - n_videos)])
    return rng.permutation(gt)


@pytest.mark.parametrize("ties", TIE_POLICIES)
def test_random_square_matches_brute_force(ties):
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(40, 40)) + 1.5 * np.eye(40)
    gt = np.arange(40)
    np.testing.assert_array_equal(ranks_t2v(sim, ties=ties), brute_t2v(sim, gt, ties))
    np.testing.assert_array_equal(ranks_v2t(sim.T, ties=ties), brute_v2t(sim, gt, ties))


@pytest.mark.parametrize("ties", TIE_POLICIES)
def test_tied_integer_multi_caption_matches_brute_force(ties):
    rng = np.random.default_rng(1)
    sim = rng.integers(0, 4, size=(35, 12))  # few distinct values: ties everywhere
    gt = multi_caption_gt(rng, 35, 12)
    np.testing.assert_array_equal(ranks_t2v(sim, gt, ties), brute_t2v(sim, gt, ties))
    np.testing.assert_array_equal(ranks_v2t(sim.T, gt, ties), brute_v2t(sim, gt, ties))
    np.testing.assert_array_equal(ranks_t2v(sim.astype(np.float32), gt, ties), brute_t2v(sim, gt, ties))


def test_tie_policies_differ_on_ties_and_report_them():
    sim = np.array([[1.0, 1.0, 1.0, 0.0], [2.0, 1.0, 1.0, 1.0]])
    gt = np.array([1, 1])
    opt, tied = ranks_t2v(sim, gt, "optimistic", return_ties=True)
    np.testing.assert_array_equal(opt, [1, 2])
    np.testing.assert_array_equal(tied, [2, 2])
    np.testing.assert_array_equal(ranks_t2v(sim, gt, "pessimistic"), [3, 4])
    np.testing.assert_array_equal(ranks_t2v(sim, gt, "average"), [2, 3])


def test_constant_matrix_shows_what_each_policy_means():
    sim = np.zeros((5, 5))
    np.testing.assert_array_equal(ranks_t2v(sim, ties="optimistic"), np.ones(5))
    np.testing.assert_array_equal(ranks_t2v(sim, ties="pessimistic"), np.full(5, 5.0))
    np.testing.assert_array_equal(ranks_t2v(sim, ties="average"), np.full(5, 3.0))


def test_identity_ground_truth_is_perfect():
    sim = np.eye(7, dtype=np.float32)
    for ties in TIE_POLICIES:
        np.testing.assert_array_equal(ranks_t2v(sim, ties=ties), np.ones(7))
        np.testing.assert_array_equal(ranks_v2t(sim.T, ties=ties), np.ones(7))
    assert rank_metrics(ranks_t2v(sim)) == {"R1": 100.0, "R5": 100.0, "R10": 100.0, "R50": 100.0,
                                            "MdR": 1.0, "MnR": 1.0}


def test_v2t_counts_a_hit_for_any_caption_of_the_video():
    # captions 0, 1 -> video 0; caption 2 -> video 1. Scores as text x video.
    sim = np.array([[0.1, 0.9],
                    [0.8, 0.2],
                    [0.5, 0.3]])
    gt = np.array([0, 0, 1])
    # video 0 column: captions score 0.1, 0.8, 0.5 -> its best caption (1) is first.
    # video 1 column: 0.9, 0.2, 0.3 -> its only caption (2) is second.
    np.testing.assert_array_equal(ranks_v2t(sim.T, gt), [1, 2])
    # t2v: caption 0 wants video 0 (0.1 < 0.9) and caption 2 video 1 (0.3 < 0.5): both second.
    np.testing.assert_array_equal(ranks_t2v(sim, gt), [2, 1, 2])


def test_block_boundaries_do_not_change_ranks(monkeypatch):
    rng = np.random.default_rng(2)
    sim = rng.integers(0, 6, size=(23, 9)).astype(np.float64)
    gt = multi_caption_gt(rng, 23, 9)
    expected_t2v, expected_v2t = brute_t2v(sim, gt, "average"), brute_v2t(sim, gt, "average")
    monkeypatch.setattr(metrics_mod, "_BLOCK_ENTRIES", 20)  # 2-row blocks, ragged last block
    np.testing.assert_array_equal(ranks_t2v(sim, gt, "average"), expected_t2v)
    np.testing.assert_array_equal(ranks_v2t(sim.T, gt, "average"), expected_v2t)


def test_infinite_scores_order_as_expected():
    sim = np.array([[-np.inf, 1.0, np.inf], [0.0, -np.inf, -1.0]])
    np.testing.assert_array_equal(ranks_t2v(sim, np.array([2, 1])), [1, 3])


def test_rank_metrics_against_direct_computation():
    rng = np.random.default_rng(3)
    ranks = rng.integers(1, 80, size=101).astype(float)
    got = rank_metrics(ranks)
    values = ranks.tolist()
    for k in (1, 5, 10, 50):
        assert got[f"R{k}"] == pytest.approx(100.0 * sum(1 for r in values if r <= k) / len(values))
    assert got["MdR"] == statistics.median(values)
    assert got["MnR"] == pytest.approx(sum(values) / len(values))
    assert rank_metrics(np.array([1, 2, 6, 11, 51])) == {
        "R1": 20.0, "R5": 40.0, "R10": 60.0, "R50": 80.0, "MdR": 6.0, "MnR": 14.2}
    assert rank_metrics(np.array([1.5, 2.5]))["R1"] == 0.0  # an averaged tie is not a hit at 1


@pytest.mark.parametrize("bad, match", [
    (np.ones(4), "2-D"),
    (np.ones((2, 2, 2)), "2-D"),
    (np.ones((0, 3)), "empty"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), r"NaN.*\(0, 1\)"),
    (np.ones((2, 2), dtype=bool), "real numbers"),
    (np.ones((2, 2), dtype=complex), "real numbers"),
])
def test_bad_score_matrices_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        ranks_t2v(bad)
    with pytest.raises(ValueError, match=match):
        ranks_v2t(bad)


def test_bad_ground_truth_raises():
    sim = np.zeros((3, 2))
    with pytest.raises(ValueError, match="square"):
        ranks_t2v(sim)
    with pytest.raises(ValueError, match="3 captions"):
        ranks_t2v(sim, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"caption_video\[2\] = 2"):
        ranks_t2v(sim, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        ranks_t2v(sim, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="first column 1"):
        ranks_v2t(sim.T, np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="ties"):
        ranks_t2v(np.eye(2), ties="random")
    with pytest.raises(ValueError, match=">= 1"):
        rank_metrics(np.array([0.0, 1.0]))
