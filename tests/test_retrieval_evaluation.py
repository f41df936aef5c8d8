"""evaluate_all end to end against an independent re-computation, plus its config."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.config import ConfigError, leaf_keys, load_section
from pipeline.retrieval.evaluation import (MACVR_REFERENCE, DSLConfig, QBNormConfig, RetrievalConfig,
                                           TiedGroundTruthWarning, evaluate_all, strategy_ranks)

KEYS = ["R1", "R5", "R10", "R50", "MdR", "MnR"]


def brute_best_rank(row, relevant):
    ordered = sorted((float(v) for v in row), reverse=True)
    return min(ordered.index(float(row[i])) + 1 for i in relevant)  # optimistic: first tied place


def brute_metrics(ranks):
    n = len(ranks)
    out = {f"R{k}": 100.0 * sum(r <= k for r in ranks) / n for k in (1, 5, 10, 50)}
    ordered = sorted(ranks)
    out["MdR"] = float(ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2)
    out["MnR"] = sum(ranks) / n
    return out


def brute_dsl(m, temp):
    cols = [[math.exp(m[i, j] / temp) for i in range(m.shape[0])] for j in range(m.shape[1])]
    return np.array([[m[i, j] * cols[j][i] / sum(cols[j]) for j in range(m.shape[1])]
                     for i in range(m.shape[0])])


def brute_qb(m, bank, beta, theta):
    counts = np.bincount([int(np.argmax(r)) for r in bank], minlength=m.shape[1])
    out = m.astype(float).copy()
    for i in range(m.shape[0]):
        if counts[int(np.argmax(m[i]))] >= theta:
            for j in range(m.shape[1]):
                out[i, j] = math.exp(beta * m[i, j]) / sum(math.exp(beta * p) for p in bank[:, j])
    return out


def brute_all(sim, gt, bank_t2v, bank_v2t, cfg):
    """The reference pipeline, written plainly: t2v on S, v2t on S.T, DSL and QB by loops."""
    n_captions, n_videos = sim.shape
    t2v = lambda m: brute_metrics([brute_best_rank(m[i], [gt[i]]) for i in range(n_captions)])
    v2t = lambda m: brute_metrics([brute_best_rank(m[v], [i for i in range(n_captions) if gt[i] == v])
                                   for v in range(n_videos)])
    return {
        "t2v": {"none": t2v(sim), "dsl": t2v(brute_dsl(sim, cfg.dsl.t2v_temp)),
                "qb": t2v(brute_qb(sim, bank_t2v, cfg.qb_t2v.beta, cfg.qb_t2v.theta))},
        "v2t": {"none": v2t(sim.T), "dsl": v2t(brute_dsl(sim.T, cfg.dsl.v2t_temp)),
                "qb": v2t(brute_qb(sim.T, bank_v2t, cfg.qb_v2t.beta, cfg.qb_v2t.theta))},
    }


def multi_caption_case(seed=0, n_videos=60, per_video=2, n_bank=80):
    """Scores in [-0.3, 0.3] so the naive exp(70 S) stays finite in float64; a few hub videos."""
    rng = np.random.default_rng(seed)
    gt = np.repeat(np.arange(n_videos), per_video)
    sim = 0.1 * rng.uniform(-1, 1, size=(gt.size, n_videos))
    sim[np.arange(gt.size), gt] += 0.15 * rng.uniform(size=gt.size)
    sim[:, :4] += 0.05  # hubs
    bank_t2v = 0.1 * rng.uniform(-1, 1, size=(n_bank, n_videos))
    bank_t2v[:, :4] += 0.1
    bank_v2t = 0.1 * rng.uniform(-1, 1, size=(n_bank, gt.size))
    return sim, gt, bank_t2v, bank_v2t


def test_evaluate_all_matches_brute_force_reference_settings():
    sim, gt, bank_t2v, bank_v2t = multi_caption_case()
    got = evaluate_all(sim, gt, bank_t2v, bank_v2t, config=MACVR_REFERENCE)
    expected = brute_all(sim, gt, bank_t2v, bank_v2t, MACVR_REFERENCE)
    assert list(got) == ["t2v", "v2t"]
    for direction in ("t2v", "v2t"):
        assert list(got[direction]) == ["none", "dsl", "qb"]
        for strategy in ("none", "dsl", "qb"):
            assert list(got[direction][strategy]) == KEYS
            assert got[direction][strategy] == pytest.approx(expected[direction][strategy])
    # The strategies really re-rank here (otherwise the comparison above proves little).
    assert got["t2v"]["dsl"] != got["t2v"]["none"] and got["t2v"]["qb"] != got["t2v"]["none"]


def test_qb_appears_only_with_its_querybank_and_float32_input_works():
    sim, gt, bank_t2v, bank_v2t = multi_caption_case(seed=1)
    sim32 = sim.astype(np.float32)
    only_t2v = evaluate_all(sim32, gt, querybank_t2v=bank_t2v, config=MACVR_REFERENCE)
    assert list(only_t2v["t2v"]) == ["none", "dsl", "qb"] and list(only_t2v["v2t"]) == ["none", "dsl"]
    only_v2t = evaluate_all(sim32, gt, querybank_v2t=bank_v2t, config=MACVR_REFERENCE)
    assert list(only_v2t["t2v"]) == ["none", "dsl"] and list(only_v2t["v2t"]) == ["none", "dsl", "qb"]
    ranks = strategy_ranks(sim32, gt, config=MACVR_REFERENCE)
    assert ranks["t2v"]["none"].shape == (gt.size,) and ranks["v2t"]["none"].shape == (60,)


def test_diagonal_default_and_identity():
    out = evaluate_all(np.eye(6), config=MACVR_REFERENCE)
    perfect = {"R1": 100.0, "R5": 100.0, "R10": 100.0, "R50": 100.0, "MdR": 1.0, "MnR": 1.0}
    assert out == {"t2v": {"none": perfect, "dsl": perfect}, "v2t": {"none": perfect, "dsl": perfect}}


def test_ties_on_the_ground_truth_warn_and_follow_the_policy():
    sim = np.zeros((4, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pessimistic = evaluate_all(sim, config=RetrievalConfig(
            ties="pessimistic", dsl=MACVR_REFERENCE.dsl, qb_t2v=MACVR_REFERENCE.qb_t2v,
            qb_v2t=MACVR_REFERENCE.qb_v2t))
    assert all(w.category is TiedGroundTruthWarning for w in caught)
    assert [str(w.message).split(":")[0] for w in caught] == ["t2v/none", "t2v/dsl", "v2t/none", "v2t/dsl"]
    assert "4 of 4 queries" in str(caught[0].message) and "'pessimistic'" in str(caught[0].message)
    assert pessimistic["t2v"]["none"]["MnR"] == 4.0
    rng = np.random.default_rng(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_all(rng.normal(size=(8, 8)), config=MACVR_REFERENCE)  # no ties: no warning


def test_querybank_shapes_are_checked():
    sim = np.zeros((6, 3))
    gt = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"querybank_t2v: expected shape \(M, 3\)"):
        evaluate_all(sim, gt, querybank_t2v=np.zeros((5, 6)), config=MACVR_REFERENCE)
    with pytest.raises(ValueError, match=r"querybank_v2t: expected shape \(M, 6\)"):
        evaluate_all(sim, gt, querybank_v2t=np.zeros((5, 3)), config=MACVR_REFERENCE)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_all(np.full((2, 2), np.nan), config=MACVR_REFERENCE)


PARAMS_YAML = """
retrieval:
  ties: optimistic
  dsl:
    t2v_temp: 0.01
    v2t_temp: 0.01
  qb_t2v:
    beta: 70.0
    k: 1
    theta: 3
  qb_v2t:
    beta: 70.0
    k: 1
    theta: 5
"""


def test_config_loads_from_params_and_validates(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_YAML)
    assert load_section(RetrievalConfig, "retrieval", params) == MACVR_REFERENCE
    assert leaf_keys(RetrievalConfig) == ["ties", "dsl.t2v_temp", "dsl.v2t_temp", "qb_t2v.beta",
                                          "qb_t2v.k", "qb_t2v.theta", "qb_v2t.beta", "qb_v2t.k",
                                          "qb_v2t.theta"]
    params.write_text(PARAMS_YAML.replace("ties: optimistic", "ties: random"))
    with pytest.raises(ConfigError, match="ties"):
        load_section(RetrievalConfig, "retrieval", params)
    params.write_text(PARAMS_YAML.replace("theta: 5", "theta: 0"))
    with pytest.raises(ConfigError, match="theta must be >= 1"):
        load_section(RetrievalConfig, "retrieval", params)
    with pytest.raises(ValueError, match="beta"):
        QBNormConfig(beta=-1.0, k=1, theta=1)
    with pytest.raises(ValueError, match="v2t_temp"):
        DSLConfig(t2v_temp=0.01, v2t_temp=0.0)
