"""Answers that hold however often they are looked at: confidence sequences for score differences.

A fixed-sample 95% interval is right 95% of the time *at one look fixed in advance*. Checked after every few
votes and acted on the first time it excludes 0, it declares a difference between two identical models far
more often (the law of the iterated logarithm makes the running z-statistic cross any fixed level eventually).
A confidence sequence is a sequence of intervals that covers the truth at *every* look at once, with
probability at least 1 - alpha, so a team may peek after every vote and stop whenever it likes.

Method: the two-sided normal-mixture boundary (Robbins 1970; Howard, Ramdas, McAuliffe and Sekhon 2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), eq. (14) with the
two-sided mixture of their Proposition 5), applied to the Bradley-Terry estimate as an asymptotic
confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas 2024, "Time-uniform central limit theory
and asymptotic confidence sequences", Ann. Statist.). For a martingale S with intrinsic time V (its
accumulated variance), P(exists t: |S_t| >= sqrt((V_t + rho) log((V_t + rho) / (rho alpha^2)))) <= alpha.
The maximum-likelihood difference d_hat of two models has, to first order, V (d_hat - d) = S with V the
Fisher information of the difference, V = 1 / v (v its variance in natural log-odds units, from the sandwich
or Fisher covariance). Dividing by V gives the half-width

    w(v) = sqrt(v (1 + rho v) log((1 + rho v) / (rho v alpha^2)))          (natural units; x SCALE for points)

``rho`` sets where the boundary is tightest. It is tuned so that the half-width is smallest at the information
of ``tuned_votes`` votes on one even pair (intrinsic time tuned_votes / 4, the Fisher information of a
p = 1/2 vote being 1/4); with the default of 1,000 votes the sequence is 1.55 times as wide as the 95%
fixed-sample interval at 1,000 votes, at most 1.63 times from 300 to 5,000 votes, and 1.95 times at 100. Being asymptotic, the guarantee needs the normal approximation to
hold; the verdict therefore waits for ``min_votes`` votes on the pair (by default 30).

Many versions at once (:func:`best_of_versions`): "the best of our K versions beats X" is judged with the
sequence at alpha / K for every version (Bonferroni), so the chance that any of K versions no better than X
is declared better, at any look, stays below alpha.

Everything here is on the board's scale: 400 / ln 10 points per unit of natural log-odds (``SCALE``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import minimize_scalar

from .bradley_terry import SCALE, z_value
from .ranking import Ranking

BETTER = "better"
WORSE = "worse"
NOT_YET = "not yet"
DEFAULT_TUNED_VOTES = 1000
DEFAULT_MIN_VOTES = 30
DEFAULT_FRESH_VOTES = 2000
"""Votes a version needs after its last sibling entered before it stops being provisional (LMArena's figure)."""
_MAX_NEEDED = 10**9


def _log_half_width(rho: float, info: float, alpha: float) -> float:
    v = 1.0 / info
    return 0.5 * math.log(v * (1.0 + rho * v) * math.log((1.0 + rho * v) / (rho * v * alpha * alpha)))


@lru_cache(maxsize=256)
def mixing_rho(alpha: float = 0.05, tuned_votes: float = DEFAULT_TUNED_VOTES) -> float:
    """The normal mixture's precision ``rho`` (natural units) that makes the half-width smallest at the
    information of ``tuned_votes`` votes on an even pair (intrinsic time ``tuned_votes / 4``)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie strictly between 0 and 1")
    if tuned_votes <= 0:
        raise ValueError("tuned_votes must be positive")
    info = tuned_votes / 4.0
    res = minimize_scalar(
        lambda log_rho: _log_half_width(math.exp(log_rho), info, alpha),
        bounds=(math.log(info) - 12.0, math.log(info) + 6.0),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(res.x))


def sequence_half_width(
    variance: np.ndarray | float, *, alpha: float = 0.05, tuned_votes: float = DEFAULT_TUNED_VOTES
) -> np.ndarray:
    """Half-width, in score points, of the confidence sequence for an estimate whose variance is ``variance``
    (score points squared; any shape). Infinite where the variance is infinite; 0 where it is 0."""
    v = np.asarray(variance, dtype=np.float64) / SCALE**2
    rho = mixing_rho(alpha, tuned_votes)
    rv = rho * v
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.sqrt(v * (1.0 + rv) * np.log((1.0 + rv) / (rv * alpha * alpha)))
    w = np.where(v > 0, w, 0.0)
    return SCALE * np.where(np.isinf(v), np.inf, w)


def verdicts(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(...) array of "better" (lower > 0), "worse" (upper < 0) or "not yet" for intervals on a difference."""
    lower = np.asarray(lower)
    upper = np.asarray(upper)
    return np.where(lower > 0, BETTER, np.where(upper < 0, WORSE, NOT_YET))


def votes_still_needed(
    difference: float,
    variance: float,
    pair_votes: float,
    *,
    alpha: float = 0.05,
    tuned_votes: float = DEFAULT_TUNED_VOTES,
    min_votes: float = DEFAULT_MIN_VOTES,
) -> int | None:
    """Extra votes on the pair before the confidence sequence excludes 0, or None when it never will.

    Read off the same boundary the verdict uses: m more votes are assumed to shrink the variance to
    v n / (n + m) (the observed rate holds, the difference does not move; for a pair with no votes,
    v / (1 + m p (1 - p) v / SCALE^2) with p the predicted win rate, as :func:`~ratings.head_to_head.head_to_head`
    does). The answer is the smallest m with half-width(v(m)) < |difference| and n + m >= ``min_votes``; 0 if
    the sequence already excludes 0. None for an estimated difference of exactly 0.
    """
    n = float(pair_votes)
    if variance <= 0 or (
        n >= min_votes and sequence_half_width(variance, alpha=alpha, tuned_votes=tuned_votes) < abs(difference)
    ):
        return 0
    if difference == 0.0 or not math.isfinite(variance):
        return None
    p = 1.0 / (1.0 + math.exp(-difference / SCALE))
    info = p * (1.0 - p) / SCALE**2

    def var_after(m: float) -> float:
        if n > 0:
            return variance * n / (n + m)
        return variance / (1.0 + m * info * variance)

    def enough(m: int) -> bool:
        return n + m >= min_votes and sequence_half_width(var_after(m), alpha=alpha, tuned_votes=tuned_votes) < abs(
            difference
        )

    hi = 1
    while not enough(hi):
        hi *= 2
        if hi > _MAX_NEEDED:
            return None
    lo = hi // 2  # enough(lo) is False (or lo == 0, already ruled out above)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class SequentialHeadToHead:
    """``difference`` = score(model) - score(rival), points. ``lower``/``upper``: the confidence sequence at
    ``alpha`` (valid at every look); ``fixed_lower``/``fixed_upper``: the fixed-sample interval at 1 - alpha,
    for comparison. ``verdict``: "better", "worse" or "not yet" from the sequence (always "not yet" below
    ``min_votes`` votes on the pair); ``votes_needed``: :func:`votes_still_needed`. ``battles``: votes on the
    pair."""

    model: str
    rival: str
    difference: float
    lower: float
    upper: float
    fixed_lower: float
    fixed_upper: float
    alpha: float
    verdict: str
    votes_needed: int | None
    battles: float


def _difference(ranking: Ranking, i: int, j: int, style_controlled: bool) -> tuple[float, float]:
    if style_controlled:
        if ranking.style_scores is None or ranking.style_covariance is None:
            raise ValueError("the ranking has no style-controlled fit")
        scores, cov = ranking.style_scores, ranking.style_covariance
    else:
        scores, cov = ranking.scores, ranking.covariance
    return float(scores[i] - scores[j]), max(float(cov[i, i] + cov[j, j] - 2.0 * cov[i, j]), 0.0)


def sequential_head_to_head(
    ranking: Ranking,
    model: str,
    rival: str,
    *,
    alpha: float = 0.05,
    tuned_votes: float = DEFAULT_TUNED_VOTES,
    min_votes: float = DEFAULT_MIN_VOTES,
    style_controlled: bool = False,
) -> SequentialHeadToHead:
    """The always-valid answer to "is ``model`` better than ``rival``, and how many more votes until we know"."""
    i, j = ranking.index(model), ranking.index(rival)
    if i == j:
        raise ValueError("a model cannot be compared with itself")
    diff, var = _difference(ranking, i, j, style_controlled)
    n = float(ranking.pair_battles[i, j])
    half = float(sequence_half_width(var, alpha=alpha, tuned_votes=tuned_votes))
    fixed = z_value(1.0 - alpha) * math.sqrt(var)
    verdict = str(verdicts(diff - half, diff + half)) if n >= min_votes else NOT_YET
    return SequentialHeadToHead(
        model=ranking.names[i],
        rival=ranking.names[j],
        difference=diff,
        lower=diff - half,
        upper=diff + half,
        fixed_lower=diff - fixed,
        fixed_upper=diff + fixed,
        alpha=alpha,
        verdict=verdict,
        votes_needed=votes_still_needed(
            diff, var, n, alpha=alpha, tuned_votes=tuned_votes, min_votes=min_votes
        ),
        battles=n,
    )


@dataclass(frozen=True)
class BestOfVersions:
    """``verdict`` "better" when at least one version's sequence at alpha / K lies above 0 (``best`` names the
    one with the highest lower bound), "worse" when every version's lies below 0, else "not yet".
    ``comparisons``: each version's :class:`SequentialHeadToHead` at alpha / K."""

    rival: str
    verdict: str
    best: str
    comparisons: tuple[SequentialHeadToHead, ...]


def best_of_versions(
    ranking: Ranking,
    versions: Sequence[str],
    rival: str,
    *,
    alpha: float = 0.05,
    tuned_votes: float = DEFAULT_TUNED_VOTES,
    min_votes: float = DEFAULT_MIN_VOTES,
    style_controlled: bool = False,
) -> BestOfVersions:
    """"The best of our K versions beats ``rival``", judged with simultaneous (Bonferroni, alpha / K)
    confidence sequences, so trying many versions does not manufacture a winner."""
    if not versions:
        raise ValueError("no versions given")
    k = len(versions)
    comps = tuple(
        sequential_head_to_head(
            ranking, v, rival, alpha=alpha / k, tuned_votes=tuned_votes, min_votes=min_votes,
            style_controlled=style_controlled,
        )
        for v in versions
    )
    best = max(comps, key=lambda c: c.lower)
    if any(c.verdict == BETTER for c in comps):
        verdict = BETTER
    elif all(c.verdict == WORSE for c in comps):
        verdict = WORSE
    else:
        verdict = NOT_YET
    return BestOfVersions(rival=rival, verdict=verdict, best=best.model, comparisons=comps)


def provisional(votes_since_last_sibling: np.ndarray | int, *, fresh_votes: int = DEFAULT_FRESH_VOTES) -> np.ndarray:
    """True where a version (or preview) is still provisional: fewer than ``fresh_votes`` votes since the last
    of its siblings (versions of the same parent) entered the arena. A new sibling resets every sibling's
    count, since it shifts the votes the family shares. (...) in, same shape out."""
    return np.asarray(votes_since_last_sibling) < fresh_votes


def votes_since(vote_times: np.ndarray, entered_at: float) -> int:
    """How many of a version's ``vote_times`` (N,) fall at or after ``entered_at`` (the last sibling's entry)."""
    return int(np.count_nonzero(np.asarray(vote_times) >= entered_at))
