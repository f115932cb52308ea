"""Online Elo, for comparison with the Bradley-Terry fit only.

This is FastChat's ``compute_elo``: battles are replayed in the given order and each one moves both
ratings by K * (actual - expected), K = 4, scale 400, base 10, all models starting at 1000. The result
depends on the order of the battles and has no confidence interval; the leaderboard uses Bradley-Terry.
"""

from __future__ import annotations

import numpy as np

from .pairs import outcome_masks


def online_elo(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    *,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
) -> np.ndarray:
    """Replay battles in order and return the (M,) final Elo ratings.

    ``model_a``, ``model_b``: (N,) model indices; ``outcome``: (N,) 1 if A won, 0 if B won, 0.5 for a tie.
    Both sides move by the same amount in opposite directions, so the mean rating stays at ``init``.
    """
    outcome_masks(outcome)
    rating = [float(init)] * int(n_models)
    # A plain Python loop: every update depends on the previous one, and floats in a list beat numpy
    # scalar indexing by an order of magnitude here.
    for a, b, y in zip(np.asarray(model_a).tolist(), np.asarray(model_b).tolist(), np.asarray(outcome, dtype=float).tolist()):
        expected = 1.0 / (1.0 + base ** ((rating[b] - rating[a]) / scale))
        delta = k * (y - expected)
        rating[a] += delta
        rating[b] -= delta
    return np.array(rating)
