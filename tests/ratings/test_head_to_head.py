from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from ratings import head_to_head, rate
from ratings.bradley_terry import SCALE


def _pair(wins: int, losses: int):
    y = np.array([1.0] * wins + [0.0] * losses)
    return rate(np.zeros(y.size, int), np.ones(y.size, int), y, ["ours", "rival"])


def test_it_gives_the_closed_form_answer_for_a_single_pair():
    h = head_to_head(_pair(58, 42), "ours", "rival")
    # Two models: the difference is the observed log-odds, and the sandwich variance is 1 / (n p (1 - p)).
    diff = SCALE * math.log(58 / 42)
    sd = SCALE / math.sqrt(100 * 0.58 * 0.42)
    assert h.difference == pytest.approx(diff, abs=1e-4)
    assert h.lower == pytest.approx(diff - 1.959964 * sd, abs=1e-3)
    assert h.upper == pytest.approx(diff + 1.959964 * sd, abs=1e-3)
    assert h.probability_better == pytest.approx(norm.cdf(diff / sd), abs=1e-6)
    assert h.predicted_win_rate == pytest.approx(0.58, abs=1e-6)
    assert h.battles == 100
    assert h.more_votes_needed == math.ceil(100 * ((1.959964 * sd / diff) ** 2 - 1))


def test_it_predicts_votes_needed_that_real_votes_at_the_same_rate_confirm():
    needed = head_to_head(_pair(58, 42), "ours", "rival").more_votes_needed
    assert needed is not None and needed > 0
    total = 100 + needed
    # Blocks of 50 votes keep the win rate at exactly 58%.
    below, above = (total // 50) * 50, (total // 50 + 1) * 50
    assert head_to_head(_pair(58 * above // 100, 42 * above // 100), "ours", "rival").lower > 0
    assert head_to_head(_pair(58 * below // 100, 42 * below // 100), "ours", "rival").lower < 0


def test_it_needs_no_more_votes_once_the_interval_excludes_zero():
    h = head_to_head(_pair(80, 20), "ours", "rival")
    assert h.lower > 0
    assert h.more_votes_needed == 0
    assert h.probability_better > 0.99


def test_it_cannot_separate_models_with_identical_scores():
    h = head_to_head(_pair(50, 50), "ours", "rival")
    assert h.probability_better == pytest.approx(0.5)
    assert h.more_votes_needed is None


def test_it_is_antisymmetric_in_model_and_rival(llmfao):
    ranking = rate(llmfao.model_a, llmfao.model_b, llmfao.outcome, llmfao.names)
    ab = head_to_head(ranking, "GPT 4", "command")
    ba = head_to_head(ranking, "command", "GPT 4")
    assert ab.difference == pytest.approx(-ba.difference)
    assert ab.probability_better == pytest.approx(1 - ba.probability_better)
    assert ab.upper - ab.lower == pytest.approx(ba.upper - ba.lower)


def test_it_estimates_votes_for_a_pair_that_never_met():
    # a-b and b-c battles only: a and c are linked through b.
    a = np.array([0] * 60 + [1] * 60)
    b = np.array([1] * 60 + [2] * 60)
    y = np.array([1.0] * 33 + [0.0] * 27 + [1.0] * 33 + [0.0] * 27)
    ranking = rate(a, b, y, ["a", "b", "c"])
    h = head_to_head(ranking, "a", "c")
    assert h.battles == 0
    assert h.lower < 0 < h.upper
    assert h.more_votes_needed is not None and h.more_votes_needed > 0
    # Fisher information added by the needed votes must bring the interval just past zero.
    info = h.predicted_win_rate * (1 - h.predicted_win_rate) / SCALE**2
    var = ((h.upper - h.lower) / (2 * 1.959964)) ** 2
    new_sd = math.sqrt(var / (1 + h.more_votes_needed * info * var))
    assert 1.959964 * new_sd < h.difference
    assert 1.959964 * math.sqrt(var / (1 + (h.more_votes_needed - 1) * info * var)) >= h.difference


def test_it_refuses_to_compare_a_model_with_itself_or_an_unknown_one():
    ranking = _pair(6, 4)
    with pytest.raises(ValueError):
        head_to_head(ranking, "ours", "ours")
    with pytest.raises(KeyError):
        head_to_head(ranking, "ours", "nobody")
