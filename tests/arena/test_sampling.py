from __future__ import annotations

import random
from collections import Counter

import pytest

from arena.sampling import NoPairAvailable, pair_sample
from models_hub.models import ModelEntry


def entry(pk: int, slug: str, weight: float = 1.0, *, inhouse: bool = False, preview: bool = False) -> ModelEntry:
    # Unsaved entries: pair_sample is a pure function of the candidates it is given.
    return ModelEntry(
        pk=pk, slug=slug, display_name=slug, sampling_weight=weight, is_inhouse=inhouse,
        visibility="preview" if preview else "public", codename=f"code-{slug}" if preview else "",
    )


def draw(candidates, n=4000, seed=1, **kwargs) -> Counter:
    rng = random.Random(seed)
    counts: Counter = Counter()
    for _ in range(n):
        left, right = pair_sample(candidates, rng=rng, **kwargs)
        assert left.pk != right.pk
        counts[left.slug] += 1
        counts[right.slug] += 1
    return counts


def test_it_draws_by_sampling_weight():
    counts = draw([entry(1, "a", 1), entry(2, "b", 1), entry(3, "c", 4)])
    assert counts["c"] > counts["a"] * 1.5 and counts["c"] > counts["b"] * 1.5


def test_it_never_draws_a_zero_weight_model():
    counts = draw([entry(1, "a"), entry(2, "b"), entry(3, "off", 0)])
    assert counts["off"] == 0


def test_it_gives_the_inhouse_model_its_share():
    candidates = [entry(1, "ours", inhouse=True)] + [entry(i, f"m{i}") for i in range(2, 12)]
    without = draw(candidates, inhouse_share=0.0)["ours"] / 4000
    with_share = draw(candidates, inhouse_share=0.6)["ours"] / 4000
    assert without < 0.3
    assert 0.6 <= with_share <= 0.75  # the share, plus the ordinary draws of the rest


def test_it_sends_the_inhouse_model_more_often_against_named_rivals():
    candidates = [entry(1, "ours", inhouse=True), entry(2, "rival"), entry(3, "other"), entry(4, "third")]
    rng = random.Random(3)
    met = Counter()
    for _ in range(3000):
        pair = pair_sample(candidates, rng=rng, inhouse_share=1.0, rivals={"rival": 5.0})
        met[next(e.slug for e in pair if e.slug != "ours")] += 1
    assert met["rival"] > 3 * max(met["other"], met["third"])


def test_it_keeps_two_preview_models_apart_unless_allowed():
    candidates = [entry(1, "p1", preview=True), entry(2, "p2", preview=True), entry(3, "pub")]
    rng = random.Random(5)
    for _ in range(500):
        pair = pair_sample(candidates, rng=rng)
        assert not all(e.is_preview for e in pair)
    pairs = {frozenset(e.slug for e in pair_sample(candidates, rng=rng, previews_meet=True)) for _ in range(500)}
    assert frozenset({"p1", "p2"}) in pairs


def test_it_puts_each_model_left_and_right_at_random():
    rng = random.Random(7)
    lefts = Counter(pair_sample([entry(1, "a"), entry(2, "b")], rng=rng)[0].slug for _ in range(2000))
    assert 900 < lefts["a"] < 1100


@pytest.mark.parametrize(
    "candidates",
    [[], [entry(1, "solo")], [entry(1, "a"), entry(2, "b", 0)], [entry(1, "p1", preview=True), entry(2, "p2", preview=True)]],
)
def test_it_refuses_when_no_pair_can_meet(candidates):
    with pytest.raises(NoPairAvailable):
        pair_sample(candidates, rng=random.Random(0))


def test_it_leaves_out_a_model_whose_breaker_is_open_until_its_cool_down_ends():
    from datetime import datetime, timedelta, timezone

    from arena.sampling import breaker_closed

    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    broken = entry(3, "broken")
    broken.breaker_open_until = now + timedelta(seconds=30)
    recovered = entry(4, "recovered")
    recovered.breaker_open_until = now - timedelta(seconds=1)
    candidates = [entry(1, "a"), entry(2, "b"), broken, recovered]
    assert [e.slug for e in breaker_closed(candidates, now=now)] == ["a", "b", "recovered"]
    assert "broken" in [e.slug for e in breaker_closed(candidates, now=now + timedelta(seconds=31))]
    counts = draw(breaker_closed(candidates, now=now), n=500)
    assert counts["broken"] == 0 and counts["recovered"] > 0


# Active sampling: the pair drawn from the current fit.

import numpy as np  # noqa: E402

from arena.sampling import ActiveFit, configured_pair_probabilities  # noqa: E402


def _arena(inhouse_parent: bool = True):
    parent = entry(2, "parent")
    ours = entry(1, "ours", inhouse=True)
    if inhouse_parent:
        ours.parent_id = 2
    return [ours, parent] + [entry(i, f"m{i}") for i in range(3, 7)]


def _fit(scores: dict[int, float], sd: float = 20.0) -> ActiveFit:
    ids = sorted(scores)
    s = np.array([scores[i] for i in ids])
    cov = np.eye(len(ids)) * sd**2
    return ActiveFit(model_ids=ids, scores=s, covariance=cov, lower=s - 2 * sd, upper=s + 2 * sd)


def test_it_knows_the_exact_pair_probabilities_of_the_configured_draw():
    candidates = _arena() + [entry(7, "p1", preview=True), entry(8, "p2", 2.0, preview=True)]
    rivals = {"m3": 3.0}
    probs = configured_pair_probabilities(candidates, inhouse_share=0.5, rivals=rivals)
    rng = random.Random(2)
    n = 20000
    seen = Counter()
    for _ in range(n):
        pair = pair_sample(candidates, rng=rng, inhouse_share=0.5, rivals=rivals)
        seen[frozenset(e.pk for e in pair)] += 1
    index = {e.pk: k for k, e in enumerate(candidates)}
    for a in candidates:
        for b in candidates:
            if a.pk < b.pk:
                p = probs[index[a.pk], index[b.pk]]
                observed = seen[frozenset((a.pk, b.pk))] / n
                assert abs(observed - p) <= 4.5 * np.sqrt(p * (1 - p) / n) + 1e-9
    assert probs[index[7], index[8]] == 0.0


def test_it_draws_as_configured_when_active_sampling_is_off():
    candidates = _arena()
    fit = _fit({1: 1000, 2: 995, 3: 1100, 4: 1000, 5: 900, 6: 800})
    a = [pair_sample(candidates, rng=random.Random(9), inhouse_share=0.5, active_fit=fit, active_strength=0.0) for _ in range(50)]
    b = [pair_sample(candidates, rng=random.Random(9), inhouse_share=0.5) for _ in range(50)]
    assert [(x.pk, y.pk) for x, y in a] == [(x.pk, y.pk) for x, y in b]


def test_it_spends_battles_on_the_open_gap_to_the_parent_and_keeps_a_floor_for_every_pair():
    candidates = _arena()
    # ours vs parent: 5 points apart, open; everyone else far apart and settled.
    fit = _fit({1: 1000, 2: 995, 3: 1400, 4: 1700, 5: 600, 6: 300})
    rng = random.Random(4)
    seen = Counter()
    sides = Counter()
    n = 6000
    for _ in range(n):
        left, right = pair_sample(candidates, rng=rng, inhouse_share=0.5, active_fit=fit, active_strength=0.9, active_floor=0.15)
        seen[frozenset((left.pk, right.pk))] += 1
        sides[left.pk] += 1
    configured = configured_pair_probabilities(candidates, inhouse_share=0.5)[0, 1]
    assert seen[frozenset((1, 2))] / n > 3 * configured
    floor = 0.15 / 15  # 6 models, 15 pairs
    assert len(seen) == 15
    assert min(seen.values()) / n > 0.6 * floor
    # left/right stay random: ours is on the left about half of its battles
    ours = sum(v for k, v in seen.items() if 1 in k)
    assert abs(sides[1] / ours - 0.5) < 0.04


def test_it_keeps_previews_apart_and_draws_unseen_models_when_active():
    candidates = _arena() + [entry(7, "p1", preview=True), entry(8, "p2", preview=True)]
    fit = _fit({1: 1000, 2: 995, 3: 1100, 4: 1000, 5: 900, 6: 800})
    rng = random.Random(6)
    met = Counter()
    for _ in range(3000):
        pair = pair_sample(candidates, rng=rng, active_fit=fit, active_strength=1.0)
        assert not all(e.is_preview for e in pair)
        for e in pair:
            met[e.slug] += 1
    assert met["p1"] > 0 and met["p2"] > 0


def test_it_reads_the_fit_from_a_snapshot_category():
    category = {
        "models": [
            {"model_id": 3, "score": 1100.0, "lower": 1080.0, "upper": 1120.0},
            {"model_id": 1, "score": 1000.0, "lower": 990.0, "upper": 1010.0},
        ],
        "covariance": [[100.0, -20.0], [-20.0, 25.0]],
    }
    fit = ActiveFit.from_category(category)
    assert list(fit.model_ids) == [3, 1]
    assert fit.scores.tolist() == [1100.0, 1000.0] and fit.upper.tolist() == [1120.0, 1010.0]
    assert fit.covariance[0, 1] == -20.0 and fit.covariance.shape == (2, 2)
