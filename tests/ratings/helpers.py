from __future__ import annotations

import numpy as np


def simulate(
    true_scores: np.ndarray, n: int, seed: int, tie_rate: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) model_a, model_b, outcome drawn from Bradley-Terry with the given (M,) 400-scale scores."""
    rng = np.random.default_rng(seed)
    m = true_scores.size
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = 1.0 / (1.0 + 10.0 ** ((true_scores[b] - true_scores[a]) / 400.0))
    y = (rng.random(n) < p).astype(float)
    y[rng.random(n) < tie_rate] = 0.5
    return a, b, y
