from __future__ import annotations

import numpy as np
import pytest

from ratings import DisconnectedGraphError, aggregate, rank_upper_bound, rate
from ratings import pairs as pairs_module
from ratings.bradley_terry import SCALE, fit_bradley_terry

from .helpers import simulate


def _in_reference_order(ranking, reference):
    idx = [ranking.index(n) for n in reference.names]
    return ranking.scores[idx], ranking.lower[idx], ranking.upper[idx], ranking.votes[idx]


def test_it_matches_arena_rank_sandwich_scores_and_intervals_on_llmfao(llmfao, reference):
    ranking = rate(llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names)
    score, lower, upper, votes = _in_reference_order(ranking, reference)
    assert np.abs(score - reference.score).max() < 0.5
    assert np.abs(lower - reference.lower).max() < 1.0
    assert np.abs(upper - reference.upper).max() < 1.0
    np.testing.assert_array_equal(votes, reference.votes)
    np.testing.assert_array_equal(np.argsort(-score, kind="stable"), np.argsort(-reference.score, kind="stable"))


def test_it_centres_unanchored_scores_on_1000(llmfao):
    ranking = rate(llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names)
    assert ranking.scores.mean() == pytest.approx(1000.0, abs=1e-6)


def test_it_aggregates_battles_into_the_same_pair_counts_as_a_loop():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, 500)
    b = (a + rng.integers(1, 6, 500)) % 6
    y = rng.choice([0.0, 0.5, 1.0], 500)
    w = rng.integers(1, 4, 500).astype(float)
    counts = aggregate(a, b, y, 6, w)
    expected: dict[tuple[int, int], list[float]] = {}
    for ai, bi, yi, wi in zip(a, b, y, w):
        lo, hi, won = (ai, bi, yi) if ai < bi else (bi, ai, 1.0 - yi)
        cell = expected.setdefault((lo, hi), [0.0, 0.0, 0.0])
        cell[2 if won == 0.5 else 0 if won == 1.0 else 1] += wi
    got = {(f, s): [w_, l_, t_] for f, s, w_, l_, t_ in zip(counts.first, counts.second, counts.wins, counts.losses, counts.ties)}
    assert got == expected


def test_it_aggregates_identically_when_the_pair_table_is_too_big_for_bincount(monkeypatch):
    a, b, y = simulate(np.linspace(900, 1100, 8), 2000, seed=1, tie_rate=0.2)
    dense = aggregate(a, b, y, 8)
    monkeypatch.setattr(pairs_module, "_DENSE_CELL_LIMIT", 0)
    sparse = aggregate(a, b, y, 8)
    for field in ("first", "second", "wins", "losses", "ties"):
        np.testing.assert_array_equal(getattr(dense, field), getattr(sparse, field))


def test_it_recovers_true_scores_from_simulated_battles():
    truth = np.linspace(800, 1200, 10)
    truth = truth - truth.mean() + 1000
    a, b, y = simulate(truth, 200_000, seed=7)
    ranking = rate(a, b, y, [f"m{i}" for i in range(10)])
    assert np.abs(ranking.scores - truth).max() < 5.0
    # A 95% interval should cover the truth for most models.
    assert ((ranking.lower <= truth) & (truth <= ranking.upper)).sum() >= 8


def test_it_rejects_outcomes_other_than_win_loss_or_tie():
    with pytest.raises(ValueError, match="outcome"):
        rate(np.array([0]), np.array([1]), np.array([0.3]), ["a", "b"])


def test_it_rejects_a_model_battling_itself():
    with pytest.raises(ValueError, match="itself"):
        rate(np.array([0, 1]), np.array([1, 1]), np.array([1.0, 0.0]), ["a", "b"])


def test_it_keeps_a_model_with_one_battle_finite_with_the_widest_interval():
    a, b, y = simulate(np.array([1000.0, 1050.0, 950.0, 1000.0]), 400, seed=2)
    a = np.append(a, 4)
    b = np.append(b, 0)
    y = np.append(y, 1.0)
    ranking = rate(a, b, y, ["a", "b", "c", "d", "newcomer"])
    assert np.isfinite(ranking.scores).all() and np.isfinite(ranking.lower).all()
    width = ranking.upper - ranking.lower
    assert width[4] > width[:4].max()
    assert ranking.votes[4] == 1


def test_it_keeps_a_model_that_never_lost_finite_and_on_top():
    a, b, y = simulate(np.array([1000.0, 1050.0, 950.0]), 300, seed=4)
    a = np.concatenate([a, np.full(20, 3)])
    b = np.concatenate([b, np.arange(20) % 3])
    y = np.concatenate([y, np.ones(20)])
    ranking = rate(a, b, y, ["a", "b", "c", "champion"])
    assert np.isfinite(ranking.scores).all()
    assert np.isfinite(ranking.upper).all()
    assert np.argmax(ranking.scores) == 3
    assert ranking.rank[3] == 1
    # The unbeaten model's runaway score must not distort the others' differences.
    without = rate(a[:300], b[:300], y[:300], ["a", "b", "c"])
    np.testing.assert_allclose(np.diff(ranking.scores[:3]), np.diff(without.scores), atol=1.0)


def test_it_scores_everyone_1000_when_every_battle_is_a_tie():
    a = np.array([0, 1, 2, 0, 1, 2])
    b = np.array([1, 2, 0, 2, 0, 1])
    ranking = rate(a, b, np.full(6, 0.5), ["x", "y", "z"])
    np.testing.assert_allclose(ranking.scores, 1000.0, atol=1e-6)
    assert (ranking.rank == 1).all()


def test_it_reports_a_disconnected_graph_naming_its_components():
    a = np.array([0, 0, 2])
    b = np.array([1, 1, 3])
    y = np.array([1.0, 0.0, 1.0])
    with pytest.raises(DisconnectedGraphError) as err:
        rate(a, b, y, ["alpha", "beta", "gamma", "delta"])
    assert sorted(map(sorted, err.value.components)) == [["alpha", "beta"], ["delta", "gamma"]]
    assert "alpha" in str(err.value) and "delta" in str(err.value)


def test_it_reports_a_model_without_battles_as_its_own_component():
    with pytest.raises(DisconnectedGraphError, match="lonely"):
        rate(np.array([0, 1]), np.array([1, 0]), np.array([1.0, 1.0]), ["a", "b", "lonely"])


def test_it_pins_the_anchor_model_and_keeps_score_differences(llmfao):
    plain = rate(llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names)
    anchored = rate(llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names, anchor=("GPT 4", 1250.0))
    k = anchored.index("GPT 4")
    assert anchored.scores[k] == pytest.approx(1250.0)
    assert anchored.lower[k] == pytest.approx(1250.0) and anchored.upper[k] == pytest.approx(1250.0)
    np.testing.assert_allclose(anchored.scores - plain.scores, 1250.0 - plain.scores[k])
    # Other intervals now carry the uncertainty of the difference to the anchor, so they widen.
    others = np.arange(len(plain.names)) != k
    assert ((anchored.upper - anchored.lower)[others] > (plain.upper - plain.lower)[others]).all()


def test_it_rejects_an_unknown_anchor():
    with pytest.raises(ValueError, match="anchor"):
        rate(np.array([0]), np.array([1]), np.array([1.0]), ["a", "b"], anchor=("c", 1000.0))


@pytest.mark.parametrize("ci", ["sandwich", "bootstrap"])
def test_it_treats_integer_weights_as_repeated_rows(ci):
    a, b, y = simulate(np.array([1000.0, 1100.0, 900.0, 1000.0]), 300, seed=5, tie_rate=0.2)
    w = np.random.default_rng(0).integers(1, 4, a.size)
    names = ["a", "b", "c", "d"]
    weighted = rate(a, b, y, names, weights=w.astype(float), ci=ci, rounds=200, seed=9)
    repeated = rate(np.repeat(a, w), np.repeat(b, w), np.repeat(y, w), names, ci=ci, rounds=200, seed=9)
    for field in ("scores", "lower", "upper", "votes"):
        np.testing.assert_allclose(getattr(weighted, field), getattr(repeated, field), atol=1e-6)


def test_it_reproduces_a_bootstrap_from_its_seed(llmfao):
    args = (llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names)
    first = rate(*args, ci="bootstrap", rounds=300, seed=11)
    again = rate(*args, ci="bootstrap", rounds=300, seed=11)
    other = rate(*args, ci="bootstrap", rounds=300, seed=12)
    np.testing.assert_array_equal(first.lower, again.lower)
    np.testing.assert_array_equal(first.upper, again.upper)
    assert not np.array_equal(first.lower, other.lower)
    np.testing.assert_array_equal(first.scores, other.scores)


def test_it_gives_bootstrap_intervals_close_to_the_sandwich_on_llmfao(llmfao):
    args = (llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names)
    sandwich = rate(*args)
    boot = rate(*args, ci="bootstrap", rounds=1000, seed=0)
    half = (sandwich.upper - sandwich.lower) / 2
    assert np.abs(boot.lower - sandwich.lower).max() < 0.2 * half.max()
    assert np.abs(boot.upper - sandwich.upper).max() < 0.2 * half.max()
    np.testing.assert_allclose(np.sqrt(np.diag(boot.covariance)), half / 1.96, rtol=0.25)


def test_it_ranks_by_the_upper_bound_rule():
    lower = np.array([10.0, 8.0, 3.0, 0.0])
    upper = np.array([12.0, 11.0, 9.0, 2.0])
    # Model 2's upper bound (9) is below the lower bound of model 0 (10) only; model 3's is below all three.
    np.testing.assert_array_equal(rank_upper_bound(lower, upper), [1, 1, 2, 4])


def test_it_converges_from_a_cold_start_to_a_stationary_point():
    a, b, y = simulate(np.array([700.0, 1000.0, 1300.0, 1600.0]), 500, seed=8, tie_rate=0.1)
    counts = aggregate(a, b, y, 4)
    theta = fit_bradley_terry(counts)
    d = theta[counts.first] - theta[counts.second]
    resid = counts.total / (1 + np.exp(-d)) - counts.score
    grad = np.bincount(counts.first, resid, 4) - np.bincount(counts.second, resid, 4) + 1e-6 * theta
    assert np.abs(grad).max() < 1e-8
    assert (np.diff(theta) > 0).all()
    assert SCALE * (theta[3] - theta[0]) == pytest.approx(900.0, abs=250.0)


def test_it_bootstraps_to_the_same_refits_with_or_without_the_chord_shortcut(monkeypatch):
    from ratings import bradley_terry as bt

    # A newcomer with two battles often draws none or only wins, which the chord phase hands to Newton.
    a, b, y = simulate(np.array([1000.0, 1100.0, 900.0, 1050.0]), 400, seed=6, tie_rate=0.1)
    a, b, y = np.append(a, [4, 4]), np.append(b, [0, 1]), np.append(y, [1.0, 0.0])
    counts = aggregate(a, b, y, 5)
    theta = fit_bradley_terry(counts)
    fast = bt.bootstrap_thetas(counts, theta, rounds=200, seed=1, tol=1e-9)
    original = bt._fit_batch
    monkeypatch.setattr(bt, "_fit_batch", lambda *args, **kw: original(*args, chord_iter=0, **kw))
    newton = bt.bootstrap_thetas(counts, theta, rounds=200, seed=1, tol=1e-9)
    np.testing.assert_allclose(fast, newton, atol=1e-6)
