from __future__ import annotations

import math

import numpy as np
import pytest

from ratings import head_to_head, rate
from ratings.bradley_terry import SCALE, z_value
from ratings.sequential import (
    BETTER,
    NOT_YET,
    WORSE,
    best_of_versions,
    provisional,
    sequence_half_width,
    sequential_head_to_head,
    verdicts,
    votes_since,
    votes_still_needed,
)


def _running_pair(true_gap: float, runs: int, votes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two models, ``runs`` independent vote streams: (runs, votes) running difference, variance and count.
    With two models the Bradley-Terry fit is the observed log-odds, its variance SCALE^2 n / (wins losses)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (1.0 + 10.0 ** (-true_gap / 400.0))
    wins = np.cumsum(rng.random((runs, votes)) < p, axis=1).astype(float)
    n = np.arange(1, votes + 1, dtype=float)[None, :]
    losses = n - wins
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = SCALE * np.log(wins / losses)
        var = SCALE**2 * n / (wins * losses)
    return diff, var, np.broadcast_to(n, diff.shape)


def test_it_covers_the_truth_at_every_look_where_the_fixed_interval_does_not():
    # 2,000 seeded streams, looked at every 10 votes from 30 to 3,000: the sequence must hold at every look
    # at once in at least 95% of streams (binomial sd of the rate is 0.5 points; tolerance 1.5), while the
    # fixed-sample interval checked the same way misses far more often.
    gap = 25.0
    diff, var, n = _running_pair(gap, 2000, 3000, seed=11)
    looks = np.arange(29, 3000, 10)
    d, v = diff[:, looks], var[:, looks]
    half = sequence_half_width(v)
    sequence_misses = np.any(np.abs(d - gap) > half, axis=1).mean()
    fixed_misses = np.any(np.abs(d - gap) > 1.959964 * np.sqrt(v), axis=1).mean()
    assert sequence_misses <= 0.05 + 0.015
    assert fixed_misses > 0.2


def test_it_is_wider_than_the_fixed_interval_and_shrinks_with_votes():
    variance = SCALE**2 * 4.0 / np.array([50.0, 100, 1000, 5000, 50000])
    half = sequence_half_width(variance)
    assert np.all(half > z_value(0.95) * np.sqrt(variance))
    assert np.all(np.diff(half) < 0)
    assert sequence_half_width(0.0) == 0.0
    # a smaller alpha gives a wider sequence
    assert np.all(sequence_half_width(variance, alpha=0.01) > half)


def test_it_names_the_verdict_by_which_side_of_zero_the_interval_lies():
    out = verdicts(np.array([1.0, -5.0, -1.0]), np.array([9.0, -0.5, 1.0]))
    assert list(out) == [BETTER, WORSE, NOT_YET]


@pytest.mark.parametrize("n", [0.0, 40.0, 400.0])
def test_it_counts_the_votes_needed_from_the_same_boundary(n):
    diff = 35.0
    variance = SCALE**2 * 4.0 / max(n, 40.0)
    m = votes_still_needed(diff, variance, n)
    assert m is not None and m > 0
    p = 1.0 / (1.0 + math.exp(-diff / SCALE))

    def var_after(k):
        return variance * n / (n + k) if n > 0 else variance / (1.0 + k * p * (1 - p) * variance / SCALE**2)

    assert sequence_half_width(var_after(m)) < diff
    assert n + m - 1 < 30 or sequence_half_width(var_after(m - 1)) >= diff
    # the fixed-sample formula asks for fewer: the sequence pays for being allowed to peek
    if n > 0:
        assert m > math.ceil(n * (variance / (diff / 1.959964) ** 2 - 1.0))


def test_it_needs_no_votes_once_decided_and_never_for_a_zero_difference():
    assert votes_still_needed(200.0, SCALE**2 * 4.0 / 2000, 2000) == 0
    assert votes_still_needed(0.0, SCALE**2 * 4.0 / 200, 200) is None


def _two(wins: int, losses: int):
    y = np.array([1.0] * wins + [0.0] * losses)
    return rate(np.zeros(y.size, int), np.ones(y.size, int), y, ["ours", "rival"])


def test_it_answers_the_head_to_head_with_a_sequence_and_the_usual_interval_beside_it():
    ranking = _two(600, 400)
    s = sequential_head_to_head(ranking, "ours", "rival")
    h = head_to_head(ranking, "ours", "rival", level=0.95)
    var = SCALE**2 * 1000 / (600 * 400)
    assert s.difference == pytest.approx(SCALE * math.log(1.5), abs=1e-4)
    assert (s.fixed_lower, s.fixed_upper) == pytest.approx((h.lower, h.upper), abs=1e-6)
    assert s.upper - s.difference == pytest.approx(float(sequence_half_width(var)), rel=1e-4)
    assert s.verdict == BETTER and s.lower > 0 and s.votes_needed == 0
    assert sequential_head_to_head(ranking, "rival", "ours").verdict == WORSE
    # 53 to 47 is outside the fixed interval's reach and the sequence's too
    close = sequential_head_to_head(_two(53, 47), "ours", "rival")
    assert close.verdict == NOT_YET and close.votes_needed > 0


def test_it_waits_for_the_minimum_votes_before_a_verdict():
    assert sequential_head_to_head(_two(90, 30), "ours", "rival").verdict == BETTER
    assert sequential_head_to_head(_two(90, 30), "ours", "rival", min_votes=200).verdict == NOT_YET


def test_it_judges_the_best_of_many_versions_at_alpha_over_k():
    rng = np.random.default_rng(4)
    names = ["v1", "v2", "v3", "parent"]
    a = rng.integers(0, 3, 3000)
    b = np.full(3000, 3)
    y = (rng.random(3000) < np.array([0.5, 0.5, 0.56])[a]).astype(float)
    ranking = rate(a, b, y, names)
    best = best_of_versions(ranking, ["v1", "v2", "v3"], "parent")
    for c in best.comparisons:
        assert c.alpha == pytest.approx(0.05 / 3)
        single = sequential_head_to_head(ranking, c.model, "parent", alpha=0.05 / 3)
        assert (c.lower, c.upper) == pytest.approx((single.lower, single.upper))
        plain = sequential_head_to_head(ranking, c.model, "parent")
        assert c.upper - c.lower > plain.upper - plain.lower
    assert best.best == max(best.comparisons, key=lambda c: c.lower).model
    assert best.verdict == (BETTER if any(c.lower > 0 for c in best.comparisons) else NOT_YET)


def test_it_keeps_a_version_provisional_until_it_has_fresh_votes_after_its_last_sibling():
    times = np.arange(5000, dtype=float)
    assert votes_since(times, 3500.0) == 1500
    assert bool(provisional(votes_since(times, 3500.0)))
    assert not bool(provisional(votes_since(times, 2500.0)))
    assert list(provisional(np.array([0, 1999, 2000]), fresh_votes=2000)) == [True, True, False]
