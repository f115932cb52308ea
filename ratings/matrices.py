"""Win-rate matrices: observed win fractions, battle counts and model-predicted win probabilities."""

from __future__ import annotations

import numpy as np

from .bradley_terry import SCALE
from .pairs import PairCounts


def observed_win_matrix(counts: PairCounts) -> tuple[np.ndarray, np.ndarray]:
    """Observed win fraction and battle count for every ordered pair.

    Returns ``(wins, battles)``, both (M, M): ``wins[i, j]`` is the fraction of the i-vs-j battles that i
    won, ties counting half (NaN where the pair never met, and on the diagonal); ``battles[i, j]`` the
    weight of those battles (symmetric).
    """
    m = counts.n_models
    battles = counts.battle_matrix()
    won = np.zeros((m, m))
    won[counts.first, counts.second] = counts.score
    won[counts.second, counts.first] = counts.total - counts.score
    with np.errstate(invalid="ignore", divide="ignore"):
        wins = np.where(battles > 0, won / battles, np.nan)
    return wins, battles


def predicted_win_matrix(scores: np.ndarray) -> np.ndarray:
    """(M, M) Bradley-Terry probability that model i beats model j, from (M,) scores on the 400 scale.

    The diagonal is 0.5.
    """
    s = np.asarray(scores, dtype=np.float64)
    diff = (s[:, None] - s[None, :]) / SCALE
    return 1.0 / (1.0 + np.exp(-diff))
