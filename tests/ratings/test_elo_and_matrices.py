from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from ratings import aggregate, observed_win_matrix, online_elo, predicted_win_matrix, rate


def test_it_moves_elo_by_half_k_after_one_battle_between_equals():
    elo = online_elo(np.array([0]), np.array([1]), np.array([1.0]), 2)
    np.testing.assert_allclose(elo, [1002.0, 998.0])


def test_it_moves_elo_less_for_an_expected_win():
    # After the first win model 0 is favoured, so its second win earns less than 2 points.
    elo = online_elo(np.array([0, 0]), np.array([1, 1]), np.array([1.0, 1.0]), 2)
    assert 1002.0 < elo[0] < 1004.0


def test_it_keeps_the_mean_elo_at_the_initial_rating(llmfao):
    elo = online_elo(llmfao.model_a, llmfao.model_b, llmfao.outcome, len(llmfao.names))
    assert elo.mean() == pytest.approx(1000.0)


def test_it_orders_models_by_elo_roughly_as_bradley_terry_does(llmfao):
    elo = online_elo(llmfao.model_a, llmfao.model_b, llmfao.outcome, len(llmfao.names))
    bt = rate(llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names)
    assert spearmanr(elo, bt.scores).statistic > 0.8


def test_it_reports_observed_win_fractions_with_ties_as_halves():
    a = np.array([0, 0, 1, 0])
    b = np.array([1, 1, 0, 2])
    y = np.array([1.0, 0.5, 1.0, 0.0])
    wins, battles = observed_win_matrix(aggregate(a, b, y, 3))
    # Model 0 against 1: a win, a tie and a loss (model 1 won as side A).
    assert wins[0, 1] == pytest.approx(0.5) and wins[1, 0] == pytest.approx(0.5)
    assert wins[0, 2] == 0.0 and wins[2, 0] == 1.0
    assert np.isnan(wins[1, 2]) and np.isnan(wins[0, 0])
    np.testing.assert_array_equal(battles, [[0, 3, 1], [3, 0, 0], [1, 0, 0]])


def test_it_predicts_the_observed_win_rate_for_two_models():
    # With two models the maximum-likelihood fit reproduces the observed win rate exactly.
    y = np.array([1.0] * 7 + [0.0] * 3 + [0.5] * 2)
    ranking = rate(np.zeros(12, int), np.ones(12, int), y, ["a", "b"])
    predicted = predicted_win_matrix(ranking.scores)
    assert predicted[0, 1] == pytest.approx(8 / 12, abs=1e-6)
    np.testing.assert_allclose(predicted + predicted.T, 1.0)
