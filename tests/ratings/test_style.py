from __future__ import annotations

import numpy as np
import pytest

from ratings import STYLE_FEATURES, rate, style_counts
from ratings.style import style_features

ANSWER = """# Title

Some **bold** words and __more bold__ here.

## Steps
1. first
2. second
- bullet
* star bullet

```python
# a comment, not a header
- not a list item either
**not bold in code**
```
"""


def test_it_counts_headers_list_items_and_bold_outside_code_blocks():
    tokens, headers, items, bold = style_counts(ANSWER)
    assert (headers, items, bold) == (2, 4, 2)
    assert tokens == len(ANSWER.split())


def test_it_counts_tokens_with_a_given_tokenizer():
    assert style_counts("abc def", tokenizer=list)[0] == 7


def test_it_counts_nothing_in_plain_text():
    assert style_counts("just a plain sentence") == (4, 0, 0, 0)


def test_it_turns_side_counts_into_standardised_normalised_differences():
    style = np.array([[[10, 0], [0, 0]], [[0, 0], [10, 0]], [[5, 0], [5, 0]]], dtype=float)
    z = style_features(style)
    raw = np.array([10 / 11, -10 / 11, 0.0])
    np.testing.assert_allclose(z[:, 0], (raw - raw.mean()) / raw.std())
    # A feature no battle uses stays at zero instead of dividing by a zero spread.
    np.testing.assert_array_equal(z[:, 1], 0.0)


def _planted(seed: int = 0, n: int = 30_000, m: int = 12):
    """Battles where verbose models win more than their strength earns: tokens carry a planted effect."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 0.6, m)
    verbosity = np.linspace(100, 800, m)  # mean answer length per model, unrelated to strength
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    counts = np.zeros((n, 2, 4))
    # Lengths vary a lot within a model, as real answers do, which is what lets the fit separate style from
    # strength.
    counts[:, 0, 0] = np.round(rng.lognormal(np.log(verbosity[a]), 0.8))
    counts[:, 1, 0] = np.round(rng.lognormal(np.log(verbosity[b]), 0.8))
    counts[:, :, 1] = rng.poisson(2, (n, 2))
    counts[:, :, 2] = rng.poisson(5, (n, 2))
    counts[:, :, 3] = rng.poisson(3, (n, 2))
    z = style_features(counts)
    beta = np.array([0.5, 0.0, 0.0, 0.0])
    p = 1 / (1 + np.exp(-(truth[a] - truth[b] + z @ beta)))
    y = (rng.random(n) < p).astype(float)
    return a, b, y, counts, truth, beta


def test_it_recovers_a_planted_style_effect_and_removes_its_bias():
    a, b, y, counts, truth, beta = _planted()
    ranking = rate(a, b, y, [f"m{i}" for i in range(truth.size)], style=counts)
    assert ranking.style_features == STYLE_FEATURES
    np.testing.assert_allclose(ranking.style_coefficients, beta, atol=0.06)
    assert ranking.style_coefficient_lower[0] > 0.3
    assert ranking.style_coefficient_lower[1] < 0 < ranking.style_coefficient_upper[1]
    true_scores = 1000 + 400 / np.log(10) * (truth - truth.mean())
    raw_error = np.sqrt(np.mean((ranking.scores - true_scores) ** 2))
    controlled_error = np.sqrt(np.mean((ranking.style_scores - true_scores) ** 2))
    assert controlled_error < 0.5 * raw_error
    assert ranking.style_scores.mean() == pytest.approx(1000.0, abs=1e-6)


def test_it_bootstraps_style_control_reproducibly():
    a, b, y, counts, truth, _ = _planted(seed=1, n=3000, m=6)
    names = [f"m{i}" for i in range(truth.size)]
    first = rate(a, b, y, names, style=counts, ci="bootstrap", rounds=30, seed=3)
    again = rate(a, b, y, names, style=counts, ci="bootstrap", rounds=30, seed=3)
    np.testing.assert_array_equal(first.style_lower, again.style_lower)
    sandwich = rate(a, b, y, names, style=counts)
    width_boot = first.style_upper - first.style_lower
    width_sand = sandwich.style_upper - sandwich.style_lower
    np.testing.assert_allclose(width_boot, width_sand, rtol=0.5)


def test_it_rejects_style_arrays_of_the_wrong_shape():
    with pytest.raises(ValueError, match="style"):
        rate(np.array([0, 1]), np.array([1, 0]), np.array([1.0, 0.0]), ["a", "b"], style=np.zeros((2, 4)))
