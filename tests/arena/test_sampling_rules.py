"""The registry's sampling knobs in the draw: a new model's boost until it has its votes, battle targets, pairs never
drawn; the same rules in the active draw and in the exact pair probabilities."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from arena.sampling import ActiveFit, NoPairAvailable, SamplingRules, configured_pair_probabilities, pair_sample
from tests.arena.test_sampling import draw, entry


def boosted(pk: int, slug: str, factor: float, until: int):
    e = entry(pk, slug)
    e.boost_factor, e.boost_until_votes = factor, until
    return e


def test_a_new_model_is_boosted_until_it_has_its_votes():
    candidates = [boosted(1, "new", 4.0, 500)] + [entry(i, f"m{i}") for i in range(2, 7)]
    plain = draw([entry(1, "new")] + candidates[1:], n=3000, seed=11)["new"] / 3000
    young = draw(candidates, n=3000, seed=11, rules=SamplingRules(votes={1: 120}))["new"] / 3000
    grown = draw(candidates, n=3000, seed=11, rules=SamplingRules(votes={1: 500}))["new"] / 3000
    assert young > 1.8 * plain
    assert abs(grown - plain) < 0.05, "the boost ends at its vote count"
    # a model the leaderboard has not counted yet has no votes: boosted
    assert draw(candidates, n=3000, seed=11, rules=SamplingRules(votes={}))["new"] / 3000 > 1.8 * plain


def test_a_model_drawn_first_meets_its_battle_targets_in_its_share():
    ours = entry(1, "ours")
    ours.battle_target_share = 0.8
    candidates = [ours] + [entry(i, f"m{i}") for i in range(2, 8)]
    rules = SamplingRules(targets={1: frozenset({2})})
    rng = random.Random(13)
    met = Counter()
    for _ in range(4000):
        pair = pair_sample(candidates, rng=rng, rules=rules)
        if 1 in {e.pk for e in pair}:
            met[next(e.pk for e in pair if e.pk != 1)] += 1
    share = met[2] / sum(met.values())
    # drawn first half of its battles (then 0.8 + 0.2 / 6 against m2), second the other half (1 / 6)
    assert 0.45 < share < 0.6
    assert met[3] > 0, "the rest of its draws stay ordinary"


def test_a_pair_never_drawn_is_never_drawn_in_either_draw():
    candidates = [entry(1, "a"), entry(2, "b"), entry(3, "c"), entry(4, "d")]
    rules = SamplingRules(never=frozenset({frozenset((1, 2))}))
    fit = ActiveFit(model_ids=[1, 2, 3, 4], scores=np.array([1000.0, 1001, 1300, 700]), covariance=np.eye(4) * 400,
                    lower=np.array([960.0, 961, 1260, 660]), upper=np.array([1040.0, 1041, 1340, 740]))
    rng = random.Random(17)
    for active in (0.0, 1.0):
        pairs = {frozenset(e.pk for e in pair_sample(candidates, rng=rng, rules=rules, active_fit=fit,
                                                     active_strength=active)) for _ in range(800)}
        assert frozenset((1, 2)) not in pairs and len(pairs) == 5
    with pytest.raises(NoPairAvailable):
        pair_sample(candidates[:2], rng=rng, rules=rules)


def test_the_exact_pair_probabilities_follow_the_rules():
    ours = boosted(1, "ours", 3.0, 100)
    ours.battle_target_share, ours.is_inhouse = 0.5, True
    candidates = [ours] + [entry(i, f"m{i}") for i in range(2, 6)]
    rules = SamplingRules(targets={1: frozenset({3})}, never=frozenset({frozenset((2, 4))}), votes={1: 10})
    probs = configured_pair_probabilities(candidates, inhouse_share=0.3, rules=rules)
    rng = random.Random(19)
    n = 20000
    seen = Counter(frozenset(e.pk for e in pair_sample(candidates, rng=rng, inhouse_share=0.3, rules=rules))
                   for _ in range(n))
    for a in range(5):
        for b in range(a + 1, 5):
            p = probs[a, b]
            observed = seen[frozenset((candidates[a].pk, candidates[b].pk))] / n
            assert abs(observed - p) <= 4.5 * np.sqrt(p * (1 - p) / n) + 1e-9
    assert probs[1, 3] == 0.0
