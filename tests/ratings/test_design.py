from __future__ import annotations

import numpy as np
import pytest

from ratings.bradley_terry import SCALE
from ratings.design import blend_pair_weights, decision_targets, pair_values
from ratings.sequential import sequence_half_width


def _spd(m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, m)) * 15.0
    return a @ a.T + np.eye(m) * 50.0


def test_it_values_a_pair_by_the_relative_shrinkage_of_the_open_targets():
    # Against the definition: the posterior covariance after one vote, inv(inv(S) + h u u'), computed directly.
    m = 5
    cov = _spd(m, 1)
    scores = np.array([1040.0, 1010.0, 1000.0, 990.0, 960.0])
    targets = np.array([[0, 1], [2, 4]])
    weights = np.array([1.0, 0.5])
    value = pair_values(scores, cov, targets, weights)
    for a, b in [(0, 1), (1, 3), (2, 4), (0, 4)]:
        u = np.zeros(m)
        u[a], u[b] = 1.0, -1.0
        p = 1.0 / (1.0 + np.exp(-(scores[a] - scores[b]) / SCALE))
        post = np.linalg.inv(np.linalg.inv(cov) + p * (1 - p) / SCALE**2 * np.outer(u, u))
        expected = 0.0
        for (i, j), w in zip(targets, weights):
            c = np.zeros(m)
            c[i], c[j] = 1.0, -1.0
            var, after = c @ cov @ c, c @ post @ c
            half = float(sequence_half_width(var))
            open_c = min(1.0, (half / abs(scores[i] - scores[j])) ** 2)
            expected += w * open_c * (var - after) / var
        assert value[a, b] == pytest.approx(expected, rel=1e-8)
        assert value[b, a] == value[a, b]
    assert np.all(np.diag(value) == 0)


def test_it_stops_valuing_a_target_once_it_is_decided():
    cov = np.diag([4.0, 4.0, 4.0])
    targets = np.array([[0, 1]])
    open_value = pair_values(np.array([1001.0, 1000.0, 999.0]), cov, targets, np.ones(1))[0, 1]
    decided_value = pair_values(np.array([1300.0, 1000.0, 700.0]), cov, targets, np.ones(1))[0, 1]
    assert decided_value < 0.01 * open_value


def test_it_blends_with_the_configured_weights_and_keeps_a_floor_for_every_eligible_pair():
    m = 4
    base = np.ones((m, m)) - np.eye(m)
    value = np.zeros((m, m))
    value[0, 1] = value[1, 0] = 5.0
    eligible = ~np.eye(m, dtype=bool)
    eligible[2, 3] = eligible[3, 2] = False
    q = blend_pair_weights(base, value, eligible, strength=0.8, floor=0.1)
    iu = np.triu_indices(m, 1)
    assert q[iu].sum() == pytest.approx(1.0)
    assert q[2, 3] == 0.0
    assert np.all(q[iu][eligible[iu]] >= 0.1 / 5 - 1e-12)
    assert q[0, 1] == pytest.approx(0.9 * (0.2 / 5 + 0.8) + 0.1 / 5)
    assert np.allclose(q, q.T)
    same = blend_pair_weights(base, value, eligible, strength=0.0, floor=0.0)
    assert np.allclose(same[iu][eligible[iu]], 1 / 5)


def test_it_names_the_gaps_that_matter():
    scores = np.array([1100.0, 1050.0, 1040.0, 1000.0, 900.0])
    lower = scores - 20
    upper = scores + 20
    pairs, weights = decision_targets(scores, lower, upper, inhouse=[2], parents={2: 4}, rivals=[0])
    found = {tuple(p): w for p, w in zip(pairs.tolist(), weights)}
    assert found[(2, 4)] == 1.0  # parent
    assert found[(1, 2)] == 0.25 and found[(2, 3)] == 0.25  # board neighbours
    assert found[(0, 2)] == 1.0  # named rival
    # overlapping neighbours of the public ranking only: 1050/1040 overlap (and are in-house pairs already)
    assert (0, 1) not in found and (3, 4) not in found
    assert set(found) == {(2, 4), (1, 2), (2, 3), (0, 2)}
