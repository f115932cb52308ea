"""The chunked style-controlled fit against its first, all-at-once definition (tests/ratings/reference_style.py).

Tried: battles that span several chunks (the chunk made small), integer and float counts, frequency weights,
a model that never won, and the plain fit's scores as Newton's start; scores, style coefficients and the
sandwich covariance must agree with the definition's.
"""

from __future__ import annotations

import numpy as np
import pytest

from ratings import rate, style
from tests.ratings import reference_style as reference


def _battles(seed: int, n: int, m: int):
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 0.8, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    length = rng.lognormal(5.0, 0.8, (n, 2)) * np.exp(0.3 * truth[np.stack([a, b], 1)])
    counts = np.stack([length, rng.poisson(2.0, (n, 2)), rng.poisson(4.0, (n, 2)), rng.poisson(1.0, (n, 2))], 2)
    counts = np.rint(counts).astype(np.int32)
    z = reference.style_features(counts)
    x = truth[a] - truth[b] + z @ np.array([0.4, 0.0, 0.1, -0.05])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-x))).astype(np.float64)
    y[rng.random(n) < 0.1] = 0.5
    return a, b, y, counts


@pytest.fixture(params=[1 << 16, 1000], ids=["one chunk", "many chunks"])
def chunk(request, monkeypatch):
    monkeypatch.setattr(style, "CHUNK", request.param)
    return request.param


def test_features_equal_the_definition(chunk):
    _, _, _, counts = _battles(0, 5_000, 6)
    ours = style.style_features(counts)
    np.testing.assert_allclose(ours, reference.style_features(counts), rtol=0, atol=1e-12)
    np.testing.assert_allclose(style.style_features(counts.astype(np.float64)), ours, rtol=0, atol=0)
    np.testing.assert_allclose(ours.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ours.std(axis=0), 1.0, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_fit_and_sandwich_equal_the_definition(chunk, weighted):
    a, b, y, counts = _battles(1, 20_000, 8)
    w = np.random.default_rng(2).integers(1, 4, a.size).astype(np.float64) if weighted else None
    z = reference.style_features(counts)
    want = reference.fit_style_controlled(a, b, y, 8, z, w)
    got = style.fit_style_controlled(a, b, y, 8, z, w)
    np.testing.assert_allclose(got.theta, want.theta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got.beta, want.beta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got.covariance, want.covariance, rtol=1e-6, atol=1e-12)
    # A start at the plain fit reaches the same optimum.
    warm = style.fit_style_controlled(a, b, y, 8, z, w, start=want.theta + 0.3)
    np.testing.assert_allclose(warm.theta, want.theta, rtol=0, atol=1e-8)


def test_a_model_that_never_won_is_fitted_as_the_definition_fits_it(chunk):
    a, b, y, counts = _battles(3, 8_000, 5)
    y[a == 4] = 0.0
    y[b == 4] = 1.0
    z = reference.style_features(counts)
    want = reference.fit_style_controlled(a, b, y, 5, z)
    got = style.fit_style_controlled(a, b, y, 5, z)
    np.testing.assert_allclose(got.theta[:4] - got.theta[:4].mean(), want.theta[:4] - want.theta[:4].mean(),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.beta, want.beta, rtol=0, atol=1e-6)
    # Through the leaderboard's entry point, which starts Newton at the plain fit's scores.
    ranking = rate(a, b, y, [f"m{i}" for i in range(5)], style=counts)
    assert ranking.one_sided[4] != 0
    expected = 1000.0 + 400.0 / np.log(10.0) * (want.theta[:4] - want.theta[:4].mean())
    np.testing.assert_allclose(ranking.style_scores[:4], expected, rtol=0, atol=1e-4)


def test_bad_inputs_are_refused():
    a, b, y, counts = _battles(4, 100, 3)
    z = style.style_features(counts)
    with pytest.raises(ValueError, match="model indices"):
        style.fit_style_controlled(a, b + 1, y, 3, z)
    with pytest.raises(ValueError, match="weights"):
        style.fit_style_controlled(a, b, y, 3, z, np.ones(5))
    with pytest.raises(ValueError, match="non-negative"):
        style.style_features(-counts)
    bad = counts.astype(np.float64)
    bad[7, 1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        style.style_features(bad)
