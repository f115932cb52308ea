"""Head-to-head: how one model (the team's own) stands against a chosen rival."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from .bradley_terry import SCALE, z_value
from .ranking import Ranking


@dataclass(frozen=True)
class HeadToHead:
    """``difference`` = score(model) - score(rival) on the 400 scale, with its ``lower``/``upper`` bounds
    at ``level``; ``probability_better`` = P(difference > 0) under the normal approximation;
    ``predicted_win_rate`` the model's Bradley-Terry chance of winning one battle against the rival;
    ``battles`` the votes already cast on this pair; ``more_votes_needed`` the estimated extra votes on
    this pair before the interval excludes 0 (0 if it already does, None if the estimated difference is
    exactly 0, where no number of votes is expected to separate them)."""

    model: str
    rival: str
    difference: float
    lower: float
    upper: float
    level: float
    probability_better: float
    predicted_win_rate: float
    battles: float
    more_votes_needed: int | None


def head_to_head(
    ranking: Ranking, model: str, rival: str, *, level: float | None = None, style_controlled: bool = False
) -> HeadToHead:
    """Compare ``model`` with ``rival`` using the ranking's scores and covariance.

    The variance of the difference is v = c_mm + c_rr - 2 c_mr from the ranking's (M, M) covariance
    (sandwich or bootstrap; anchoring does not change it). ``level`` defaults to the ranking's.

    Votes needed, for n > 0 votes already on the pair: m more votes are assumed to shrink v to
    v * n / (n + m), i.e. the new votes are as informative as the past ones on average (the observed win
    rate holds), the estimated difference does not move, and the pair's own votes carry the information
    about the difference (votes against other models are not counted, so this is optimistic when most of
    the information comes through third models). The answer is the smallest m with
    z * sqrt(v * n / (n + m)) < |difference|. For a pair that never met (n = 0) the same question is answered
    by adding m p (1 - p) Fisher information, p the predicted win rate, to the difference:
    v_new = v / (1 + m p (1 - p) v / SCALE^2).
    """
    i, j = ranking.index(model), ranking.index(rival)
    if i == j:
        raise ValueError("a model cannot be compared with itself")
    level = ranking.level if level is None else level
    z = z_value(level)
    if style_controlled:
        if ranking.style_scores is None or ranking.style_covariance is None:
            raise ValueError("the ranking has no style-controlled fit")
        scores, cov = ranking.style_scores, ranking.style_covariance
    else:
        scores, cov = ranking.scores, ranking.covariance
    diff = float(scores[i] - scores[j])
    var = max(float(cov[i, i] + cov[j, j] - 2.0 * cov[i, j]), 0.0)
    sd = math.sqrt(var)
    prob = float(ndtr(diff / sd)) if sd > 0 else (1.0 if diff > 0 else 0.0 if diff < 0 else 0.5)
    p_win = float(1.0 / (1.0 + np.exp(-diff / SCALE)))
    n = float(ranking.pair_battles[i, j])

    if abs(diff) > z * sd:
        needed: int | None = 0
    elif diff == 0.0:
        needed = None
    else:
        target = diff * diff / (z * z)  # the variance at which the interval just excludes 0
        if n > 0:
            needed = max(1, math.ceil(n * (var / target - 1.0)))
        else:
            info = p_win * (1.0 - p_win) / SCALE**2
            needed = max(1, math.ceil((1.0 / target - 1.0 / var) / info))
    return HeadToHead(
        model=ranking.names[i],
        rival=ranking.names[j],
        difference=diff,
        lower=diff - z * sd,
        upper=diff + z * sd,
        level=level,
        probability_better=prob,
        predicted_win_rate=p_win,
        battles=n,
        more_votes_needed=needed,
    )
