"""evaluate_all end to end against an independent re-computation, plus its config."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.config import ConfigError, leaf_keys, load_section
from pipeline.retrieval import DSLParams, QBDirection, RetrievalConfig, STRATEGIES, rank_all, reference_config
from pipeline.retrieval.evaluation import TiedGroundTruthWarning, evaluate_all, strategy_ranks
from pipeline.retrieval.strategies import NoParams, Rescored, Strategy

MACVR_REFERENCE = reference_config()

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
    dsl, qb = cfg.strategies["dsl"], cfg.strategies["qb"]
    return {
        "t2v": {"none": t2v(sim), "dsl": t2v(brute_dsl(sim, dsl.t2v_temp)),
                "qb": t2v(brute_qb(sim, bank_t2v, qb.t2v.beta, qb.t2v.theta))},
        "v2t": {"none": v2t(sim.T), "dsl": v2t(brute_dsl(sim.T, dsl.v2t_temp)),
                "qb": v2t(brute_qb(sim.T, bank_v2t, qb.v2t.beta, qb.v2t.theta))},
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
        pessimistic = evaluate_all(sim, config=reference_config(ties="pessimistic"))
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
  strategies:
    none: {}
    dsl: {t2v_temp: 0.01, v2t_temp: 0.01}
    qb:
      t2v: {beta: 70.0, k: 1, theta: 3}
      v2t: {beta: 70.0, k: 1, theta: 5}
"""


def test_config_loads_from_params_and_validates(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_YAML)
    assert load_section(RetrievalConfig, "retrieval", params) == MACVR_REFERENCE
    assert leaf_keys(RetrievalConfig) == ["ties", "strategies"]
    params.write_text(PARAMS_YAML.replace("ties: optimistic", "ties: random"))
    with pytest.raises(ConfigError, match="ties"):
        load_section(RetrievalConfig, "retrieval", params)
    params.write_text(PARAMS_YAML.replace("theta: 5", "theta: 0"))
    with pytest.raises(ConfigError, match="theta must be >= 1"):
        load_section(RetrievalConfig, "retrieval", params)
    params.write_text(PARAMS_YAML.replace("none: {}", "nonsense: {}"))
    with pytest.raises(ConfigError, match=r"unknown inference strategy 'nonsense'; registered: none, dsl, qb"):
        load_section(RetrievalConfig, "retrieval", params)
    params.write_text(PARAMS_YAML.replace("v2t_temp: 0.01}", "v2t_temp: 0.01, extra: 1}"))
    with pytest.raises(ConfigError, match="unknown key 'extra'"):
        load_section(RetrievalConfig, "retrieval", params)
    with pytest.raises(ValueError, match="beta"):
        QBDirection(beta=-1.0, k=1, theta=1)
    with pytest.raises(ValueError, match="v2t_temp"):
        DSLParams(t2v_temp=0.01, v2t_temp=0.0)


def test_strategies_run_in_config_order_and_subsets_work():
    sim, gt, bank_t2v, bank_v2t = multi_caption_case(seed=3)
    cfg = reference_config(names=("qb", "none"))
    out = evaluate_all(sim, gt, bank_t2v, bank_v2t, config=cfg)
    assert list(out["t2v"]) == ["qb", "none"]
    assert out["t2v"]["none"] == evaluate_all(sim, gt, config=MACVR_REFERENCE)["t2v"]["none"]


def test_official_ties_pool_every_tied_position():
    """The official compute_metrics: a constant 100 x 100 matrix gives R@1 = 1.0 (one entry per
    tied position); without ties 'official' equals 'optimistic'."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        const = evaluate_all(np.ones((100, 100)), config=reference_config(ties="official", names=("none",)))
    assert const["t2v"]["none"]["R1"] == pytest.approx(1.0)
    assert const["t2v"]["none"]["R50"] == pytest.approx(50.0)
    assert const["t2v"]["none"]["MdR"] == pytest.approx(50.5)
    # brute force of the official rule on a matrix with some ties
    rng = np.random.default_rng(4)
    sim = rng.integers(0, 3, size=(7, 5)).astype(float)
    gt = np.array([0, 1, 2, 3, 4, 0, 1])
    pooled = []
    for i in range(7):
        ordered = sorted(sim[i], reverse=True)
        pooled += [p + 1 for p, v in enumerate(ordered) if v == sim[i, gt[i]]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = evaluate_all(sim, gt, config=reference_config(ties="official", names=("none",)))["t2v"]["none"]
    assert got["R1"] == pytest.approx(100 * sum(p <= 1 for p in pooled) / len(pooled))
    assert got["MnR"] == pytest.approx(np.mean(pooled)) and got["MdR"] == pytest.approx(np.median(pooled))
    clean = rng.normal(size=(9, 9))
    assert evaluate_all(clean, config=reference_config(ties="official")) == \
        evaluate_all(clean, config=reference_config(ties="optimistic"))


def test_qb_norm_reports_what_it_activated():
    sim, gt, bank_t2v, bank_v2t = multi_caption_case(seed=5)
    ranked = rank_all(sim, gt, bank_t2v, bank_v2t, config=MACVR_REFERENCE)
    info = ranked.info["t2v"]["qb"]
    assert info["gallery_items"] == sim.shape[1] and info["queries"] == sim.shape[0]
    active = np.bincount(bank_t2v.argmax(1), minlength=sim.shape[1]) >= 3
    assert info["active_items"] == int(active.sum())
    assert info["normalised_queries"] == int(active[sim.argmax(1)].sum())
    # a querybank that activates nothing: counted, warned, and qb == none
    flat_bank = np.zeros((2, sim.shape[1]))
    flat_bank[0, 0] = flat_bank[1, 1] = 1.0  # two hits, theta 3: nothing active
    ranked = rank_all(sim, gt, flat_bank, None, config=MACVR_REFERENCE)
    assert ranked.info["t2v"]["qb"]["active_items"] == 0 and ranked.info["t2v"]["qb"]["normalised_queries"] == 0
    assert np.array_equal(ranked.ranks["t2v"]["qb"], ranked.ranks["t2v"]["none"])
    assert ranked.skipped["v2t"] == {"qb": "no querybank"}


def test_a_new_strategy_needs_only_a_registration():
    """A toy strategy registered at run time is evaluated through the same path as built-ins."""

    class Reverse(Strategy):
        name, label, description = "reverse", "reverse", "ranks the worst first (a toy)"
        params_type = NoParams

        def apply(self, sim, direction, params, querybank=None):
            return Rescored(-np.asarray(sim, dtype=float), {"flipped": 1})

    with STRATEGIES.temporarily("reverse", Reverse()):
        cfg = RetrievalConfig(ties="optimistic", strategies={"none": NoParams(), "reverse": NoParams()})
        ranked = rank_all(np.eye(5) + 0.1, config=cfg)
        assert ranked.metrics()["t2v"]["reverse"]["R1"] == 0.0 and ranked.info["t2v"]["reverse"] == {"flipped": 1}
    assert "reverse" not in STRATEGIES
