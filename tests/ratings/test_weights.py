from __future__ import annotations

import numpy as np
import pytest

from ratings import rate
from ratings.weights import inverse_pair_frequency, prompt_repeat_weights
from tests.ratings.helpers import simulate

NAMES = ["a", "b", "c", "d"]
TRUE = np.array([1060.0, 1020.0, 990.0, 930.0])




def test_it_gives_every_pair_the_same_total_weight_and_keeps_the_total():
    a = np.array([0, 1, 0, 0, 2, 3, 3])
    b = np.array([1, 0, 1, 2, 3, 2, 1])
    w = inverse_pair_frequency(a, b, 4)
    assert w.sum() == pytest.approx(a.size)
    pair = np.minimum(a, b) * 4 + np.maximum(a, b)
    totals = {k: w[pair == k].sum() for k in np.unique(pair)}
    assert all(t == pytest.approx(a.size / len(totals)) for t in totals.values())


def test_a_balanced_fit_equals_the_fit_on_replicated_battles():
    # Pair (0,1) has 2 battles, (1,2) 4, (0,2) 1; weights 1/2, 1/4, 1 up to scale: replicating the battles of
    # (0,1) twice and of (0,2) four times balances the pairs by hand, and the scores must match.
    a = np.array([0, 1, 1, 2, 1, 2, 0])
    b = np.array([1, 0, 2, 1, 2, 1, 2])
    y = np.array([1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0])
    balanced = rate(a, b, y, ["x", "y", "z"], balance_pairs=True)
    rep = np.array([2, 2, 1, 1, 1, 1, 4])
    replicated = rate(np.repeat(a, rep), np.repeat(b, rep), np.repeat(y, rep), ["x", "y", "z"])
    assert np.allclose(balanced.scores, replicated.scores, atol=1e-6)


def test_it_caps_what_a_repeated_prompt_counts_for():
    prompts = np.array(["p"] * 10 + ["q"] * 3 + ["r"])
    w = prompt_repeat_weights(prompts, 5)
    assert np.allclose(w[:10], 0.5) and np.allclose(w[10:], 1.0)
    assert w[:10].sum() == pytest.approx(5.0)
    with pytest.raises(ValueError):
        prompt_repeat_weights(prompts, 0)


def test_a_capped_fit_equals_the_fit_with_the_repeats_thinned_by_hand():
    # 600 votes on one prompt with cap 200: each counts 1/3; the same as replicating every other vote 3 times.
    a, b, y = simulate(TRUE, 3000, seed=5)
    prompts = np.arange(3000)
    prompts[:600] = -1
    capped = rate(a, b, y, NAMES, prompts=prompts, prompt_cap=200)
    rep = np.where(prompts == -1, 1, 3)
    by_hand = rate(np.repeat(a, rep), np.repeat(b, rep), np.repeat(y, rep), NAMES)
    assert np.allclose(capped.scores, by_hand.scores, atol=1e-6)
    plain = rate(a, b, y, NAMES)
    assert not np.allclose(capped.scores, plain.scores, atol=1e-3)
    with pytest.raises(ValueError):
        rate(a, b, y, NAMES, prompt_cap=200)
