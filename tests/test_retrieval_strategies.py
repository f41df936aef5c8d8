"""DSL and QB-Norm (dynamic inverted softmax) against their formulas written out with loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.retrieval.strategies import dual_softmax as dsl_mod
from pipeline.retrieval.strategies import querybank_norm as qb_mod
from pipeline.retrieval.strategies import dsl, qb_norm, querybank_activation


def loop_dsl(sim, temp):
    n_rows, n_cols = sim.shape
    out = np.zeros((n_rows, n_cols))
    for j in range(n_cols):
        column = [float(sim[i, j]) / temp for i in range(n_rows)]
        top = max(column)
        total = sum(math.exp(v - top) for v in column)
        for i in range(n_rows):
            out[i, j] = float(sim[i, j]) * math.exp(column[i] - top) / total
    return out


def loop_activation(querybank, k, theta):
    n_rows, n_cols = querybank.shape
    counts = [0] * n_cols
    for m in range(n_rows):
        order = sorted(range(n_cols), key=lambda j: (-float(querybank[m, j]), j))
        for j in order[:k]:
            counts[j] += 1
    return np.array([c >= theta for c in counts])


def naive_inverted_softmax(sim, querybank, beta, active):
    """Plain float64 DIS: exp(beta S) / sum_m exp(beta P), only on rows whose top-1 is active."""
    out = np.array(sim, dtype=np.float64)
    for i in range(sim.shape[0]):
        if not active[int(np.argmax(sim[i]))]:
            continue
        for j in range(sim.shape[1]):
            norm = sum(math.exp(beta * float(querybank[m, j])) for m in range(querybank.shape[0]))
            out[i, j] = math.exp(beta * float(sim[i, j])) / norm
    return out


def loop_log_dis(sim, querybank, beta, active):
    """The same in log space, one column at a time in float64 (no overflow at large beta)."""
    out = np.array(sim, dtype=np.float64)
    for j in range(sim.shape[1]):
        column = [beta * float(querybank[m, j]) for m in range(querybank.shape[0])]
        top = max(column)
        lse = top + math.log(sum(math.exp(v - top) for v in column))
        for i in range(sim.shape[0]):
            if active[int(np.argmax(sim[i]))]:
                out[i, j] = beta * float(sim[i, j]) - lse
    return out


def hubby_case(rng, n_test=30, n_bank=40, n_items=12):
    """Querybank whose top-1s are mostly items 0-2 (hubs), test rows with varied top-1s."""
    bank = rng.normal(size=(n_bank, n_items))
    bank[:, :3] += 2.0
    sim = rng.normal(size=(n_test, n_items))
    return sim, bank


def test_dsl_matches_loops_both_directions():
    rng = np.random.default_rng(0)
    sim = rng.normal(scale=0.05, size=(9, 6))
    np.testing.assert_allclose(dsl(sim, 0.01), loop_dsl(sim, 0.01), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dsl(sim.T, 0.02), loop_dsl(sim.T, 0.02), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dsl(sim.astype(np.float32), 0.5), loop_dsl(sim.astype(np.float32), 0.5),
                               rtol=1e-12, atol=1e-15)


def test_dsl_column_blocks_match_whole(monkeypatch):
    rng = np.random.default_rng(1)
    sim = rng.normal(size=(7, 11))
    whole = dsl(sim, 0.1)
    monkeypatch.setattr(dsl_mod, "_BLOCK_ENTRIES", 15)  # 2-column blocks, ragged end
    np.testing.assert_array_equal(dsl(sim, 0.1), whole)


def test_dsl_demotes_a_hub():
    # Video 0 is everyone's best match; DSL hands caption 1 to its second choice.
    sim = np.array([[0.9, 0.1], [0.8, 0.7]])
    assert np.argmax(sim[1]) == 0
    assert np.argmax(dsl(sim, 0.01)[1]) == 1


@pytest.mark.parametrize("k, theta", [(1, 1), (1, 3), (2, 2), (3, 5), (12, 40)])
def test_activation_set_matches_sorted_lists_with_ties(k, theta):
    rng = np.random.default_rng(2)
    bank = rng.integers(0, 3, size=(40, 12))  # heavy ties: the tie-break rule matters
    expected = loop_activation(bank, k, theta)
    np.testing.assert_array_equal(querybank_activation(bank, k, theta), expected)
    np.testing.assert_array_equal(querybank_activation(bank.astype(np.float32), k, theta), expected)


def test_activation_blocks_match_whole(monkeypatch):
    rng = np.random.default_rng(3)
    bank = rng.integers(0, 4, size=(17, 8))
    expected = loop_activation(bank, 3, 2)
    monkeypatch.setattr(qb_mod, "_BLOCK_ENTRIES", 20)
    np.testing.assert_array_equal(querybank_activation(bank, 3, 2), expected)


def test_qb_theta1_equals_naive_inverted_softmax():
    rng = np.random.default_rng(4)
    sim, bank = hubby_case(rng)
    beta = 2.0  # small enough for the naive exp
    active = loop_activation(bank, 1, 1)
    normalised = active[np.argmax(sim, axis=1)]
    assert normalised.any() and not normalised.all()  # both kinds of rows are exercised
    expected = naive_inverted_softmax(sim, bank, beta, active)
    got = qb_norm(sim, bank, beta=beta, k=1, theta=1)
    np.testing.assert_allclose(np.exp(got[normalised]), expected[normalised], rtol=1e-12)
    np.testing.assert_array_equal(got[~normalised], sim[~normalised])


def test_qb_rows_outside_activation_set_are_unchanged():
    rng = np.random.default_rng(5)
    sim, bank = hubby_case(rng)
    active = loop_activation(bank, 1, 3)
    untouched = ~active[np.argmax(sim, axis=1)]
    assert untouched.any() and not untouched.all()
    got = qb_norm(sim.astype(np.float32), bank.astype(np.float32), beta=70.0, k=1, theta=3)
    np.testing.assert_array_equal(got[untouched], sim.astype(np.float32)[untouched])
    assert not np.array_equal(got[~untouched], sim.astype(np.float32)[~untouched])


def test_qb_beta70_float32_is_finite_and_ranks_like_float64():
    rng = np.random.default_rng(6)
    sim, bank = hubby_case(rng)
    sim32, bank32 = (sim / 1.5).astype(np.float32), (bank / 1.5).astype(np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(np.float32(70.0) * bank32)).any()  # the naive form would overflow
    got = qb_norm(sim32, bank32, beta=70.0, k=1, theta=3)
    assert np.isfinite(got).all()
    expected = loop_log_dis(sim32, bank32, 70.0, loop_activation(bank32, 1, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(np.argsort(-got, axis=1, kind="stable"),
                                  np.argsort(-expected, axis=1, kind="stable"))


def test_qb_streamed_normaliser_matches_one_shot(monkeypatch):
    rng = np.random.default_rng(7)
    sim, bank = hubby_case(rng)
    whole = qb_norm(sim, bank, beta=70.0, k=2, theta=2)
    monkeypatch.setattr(qb_mod, "_BLOCK_ENTRIES", 30)  # 2-row querybank blocks
    np.testing.assert_allclose(qb_norm(sim, bank, beta=70.0, k=2, theta=2), whole, rtol=1e-12)


def test_qb_threshold_above_any_count_changes_nothing():
    rng = np.random.default_rng(8)
    sim, bank = hubby_case(rng)
    np.testing.assert_array_equal(qb_norm(sim, bank, beta=20.0, k=1, theta=41), sim)


def test_strategies_reject_bad_inputs():
    sim = np.zeros((3, 4))
    with pytest.raises(ValueError, match="gallery columns"):
        qb_norm(sim, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        qb_norm(sim, np.full((5, 4), np.nan))
    with pytest.raises(ValueError, match="infinite"):
        qb_norm(np.full((3, 4), np.inf), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="infinite"):
        dsl(np.array([[1.0, -np.inf]]))
    with pytest.raises(ValueError, match="beta"):
        qb_norm(sim, np.zeros((5, 4)), beta=0.0)
    with pytest.raises(ValueError, match="k must be"):
        qb_norm(sim, np.zeros((5, 4)), k=5)
    with pytest.raises(ValueError, match="theta"):
        qb_norm(sim, np.zeros((5, 4)), theta=0)
    with pytest.raises(ValueError, match="temp"):
        dsl(sim, 0.0)
    with pytest.raises(ValueError, match="2-D"):
        dsl(np.zeros(3))
