"""Bradley-Terry maximum likelihood on pairwise counts, with sandwich and bootstrap intervals.

Model: P(i beats j) = 1 / (1 + 10 ** ((s_j - s_i) / 400)), the scale arena-rank and FastChat use. Internally
the parameters are natural log-odds ``theta`` with s = 1000 + theta * 400 / ln(10). A tie (or both-bad)
counts as half a win to each side, i.e. contributes 0.5 log p + 0.5 log(1 - p) to the log-likelihood.

Fit: Newton's method with a backtracking line search on the negative log-likelihood of the pair totals
plus ``ridge / 2 * |theta|^2``. The ridge is tiny (1e-6 battles' worth by default); it keeps the Hessian
invertible (the likelihood is flat along theta + c) and the estimate finite when a model won or lost every
battle. At the optimum the data gradient sums to zero, so the ridge puts the mean of theta at exactly zero:
unanchored scores average 1000, where arena-rank lands (it starts at zero and its gradient sums to zero).
For a model that won (or lost) everything the score is set by the ridge alone, so read it as "very high"
(or "very low"), not as a number.

A model that never won a battle (or never lost one) has no finite estimate: the likelihood keeps rising as
its score goes to minus (plus) infinity, and the ridge alone stops it thousands of points away.
:func:`one_sided` finds such models (peeling them off one after another, since a model whose only wins
were against a never-winner is in the same place once that one is gone); :func:`centre_on` then centres
the scores on the other models, so that the placeholder does not drag every other score with it.

Sandwich covariance (arena-rank's ``ci_method="sandwich"``): bread^-1 meat bread^-1 with the Hessian as
bread and the sum of per-battle score outer products as meat; a battle of pair (i, j) with outcome y has
score (y - p) (e_i - e_j), so the meat needs only the per-pair weights of wins, losses and ties. Both are
singular along the all-ones vector, so the covariance is that of the centred parametrisation (the ridge
inverse followed by projection onto sum-zero vectors, equal to the pseudo-inverse form).

Difference from arena-rank 0.1.1: before inverting, arena-rank adds 1e-5 x (number of battles) to the
Hessian's diagonal (its ``hessian_reg``, scaled by the battle count for unweighted data). That is a prior
worth 1e-5 N battles on every model, invisible for a model with thousands of votes and large for one with a
few dozen: on 198k battles its intervals for the 8 models with under 100 votes are up to 13 points narrower
than the unregularised sandwich, and on Bradley-Terry data with known truth the unregularised intervals
cover the truth as often or more. So the default bread carries only the fit's tiny ridge;
``bread_ridge=arena_rank_bread_ridge(counts)`` reproduces arena-rank's intervals: their half-widths to 0.01
points on the parity fixture (tests/ratings/data/, 200k battles, 8 models with 25 to 99), where the bounds of
the rare models then differ only by where arena-rank's L-BFGS stopped short of the optimum (up to 1.9 points;
its gradient there is ~0.1, ours ~1e-6). On LLMFAO, where every model has 121 or more votes, the default
is within 0.2 points of arena-rank's bounds and the compatible bread within 0.02.

Bootstrap: resample the battles with replacement, which on the aggregated data is one multinomial draw
over the (pair, outcome) cells per round, and refit every round; all rounds of a chunk are fitted at once,
warm-started at the full-data estimate, by chord iterations (Newton steps that reuse the full-data Hessian)
and, for the few rounds those do not settle, batched Newton; the chunks run on every core, each with its own
generator spawned from the seed (the same seed, the same draws, whatever the number of cores). Intervals are percentiles of the refitted
scores. A round in which a rarely seen model drew no battle leaves that model at the ridge's
centre; this widens its interval, which is the honest answer for a model with very few votes.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.sparse import csr_matrix
from scipy.special import expit, ndtri

from .pairs import PairCounts

SCALE = 400.0 / math.log(10.0)
"""Score points per unit of natural log-odds."""
INIT_SCORE = 1000.0
"""Mean score of an unanchored fit."""
DEFAULT_RIDGE = 1e-6

# A bootstrap chunk's Hessians take chunk * M * M doubles; keep that near 160 MB.
_CHUNK_DOUBLES = 20_000_000
_MAX_CHUNK = 100
# Newton steps on theta are clipped to this size per iteration so a bootstrap round whose resample lost
# all of a model's losses (or wins) walks out along the logistic tail instead of overshooting.
MAX_NEWTON_STEP = 4.0


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def negative_log_likelihood(counts: PairCounts, theta: np.ndarray, ridge: float = DEFAULT_RIDGE) -> float:
    """Penalised negative log-likelihood of ``theta`` (M,) natural units, ties as half wins."""
    d = theta[counts.first] - theta[counts.second]
    s = counts.score
    n = counts.total
    return float(np.dot(s, _softplus(-d)) + np.dot(n - s, _softplus(d)) + 0.5 * ridge * np.dot(theta, theta))


def _gradient(counts: PairCounts, theta: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """(M,) gradient of the penalised NLL and the (P,) win probabilities of ``first``."""
    m = counts.n_models
    p = expit(theta[counts.first] - theta[counts.second])
    r = counts.total * p - counts.score
    g = np.bincount(counts.first, r, m) - np.bincount(counts.second, r, m) + ridge * theta
    return g, p


def _pair_matrix(counts: PairCounts, h: np.ndarray, diagonal_extra: float = 0.0) -> np.ndarray:
    """(M, M) sum over pairs of h_p (e_i - e_j)(e_i - e_j)^T, plus ``diagonal_extra`` on the diagonal."""
    m = counts.n_models
    out = np.zeros((m, m))
    out[counts.first, counts.second] = -h
    out[counts.second, counts.first] = -h
    idx = np.arange(m)
    out[idx, idx] = np.bincount(counts.first, h, m) + np.bincount(counts.second, h, m) + diagonal_extra
    return out


def hessian(counts: PairCounts, theta: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """(M, M) Hessian of the penalised NLL at ``theta`` (M,)."""
    p = expit(theta[counts.first] - theta[counts.second])
    return _pair_matrix(counts, counts.total * p * (1.0 - p), ridge)


def fit_bradley_terry(
    counts: PairCounts,
    *,
    ridge: float = DEFAULT_RIDGE,
    theta0: np.ndarray | None = None,
    tol: float = 1e-9,
    max_iter: int = 500,
) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry log-strengths from pair totals.

    Returns ``theta`` (M,), natural log-odds units, mean zero. Does not check connectivity (see
    :meth:`PairCounts.check_connected`); on a disconnected graph each component is pulled to mean zero by
    the ridge, which is arbitrary.
    """
    m = counts.n_models
    theta = np.zeros(m) if theta0 is None else np.array(theta0, dtype=np.float64)
    f = negative_log_likelihood(counts, theta, ridge)
    for _ in range(max_iter):
        g, p = _gradient(counts, theta, ridge)
        g -= g.mean()  # rounding residue along all-ones would be amplified by 1 / ridge
        h = _pair_matrix(counts, counts.total * p * (1.0 - p), ridge)
        step = np.linalg.solve(h, g)
        # Backtracking keeps the iteration monotone from a cold start; near the optimum the full step wins.
        t = 1.0
        while True:
            candidate = theta - t * step
            f_new = negative_log_likelihood(counts, candidate, ridge)
            if f_new <= f - 1e-4 * t * np.dot(g, step) or t < 1e-8:
                break
            t *= 0.5
        theta, f = candidate, f_new
        # The Newton decrement g.step is the expected gain; once it is at rounding level of f, the
        # remaining step is noise amplified along the ridge's nearly flat all-ones direction.
        if np.max(np.abs(t * step)) < tol or np.dot(g, step) < 1e-13 * max(1.0, abs(f)):
            break
    return theta - theta.mean()


def covariance_centre(cov: np.ndarray) -> np.ndarray:
    """Project an (M, M) covariance onto sum-zero parameters: P cov P with P = I - 11^T / M."""
    c = cov - cov.mean(axis=0, keepdims=True)
    return c - c.mean(axis=1, keepdims=True)


ARENA_RANK_HESSIAN_REG = 1e-5
"""arena-rank 0.1.1's ``hessian_reg``: added, times the number of battles, to the bread's diagonal."""


def arena_rank_bread_ridge(counts: PairCounts) -> float:
    """The diagonal arena-rank 0.1.1 adds to the Hessian before inverting it: 1e-5 x the battles' total weight."""
    return ARENA_RANK_HESSIAN_REG * float(counts.total.sum())


def sandwich_covariance(
    counts: PairCounts, theta: np.ndarray, ridge: float = DEFAULT_RIDGE, *, bread_ridge: float | None = None
) -> np.ndarray:
    """(M, M) sandwich covariance of the centred ``theta`` (M,), natural units.

    bread = Hessian (with ``bread_ridge`` on its diagonal, the fit's ``ridge`` when None), meat = sum over
    battles of w (y - p)^2 (e_a - e_b)(e_a - e_b)^T. See the module notes for ``arena_rank_bread_ridge``.
    """
    p = expit(theta[counts.first] - theta[counts.second])
    bread = _pair_matrix(counts, counts.total * p * (1.0 - p), ridge if bread_ridge is None else bread_ridge)
    meat = _pair_matrix(
        counts,
        counts.wins * (1.0 - p) ** 2 + counts.losses * p**2 + counts.ties * (0.5 - p) ** 2,
    )
    inv = np.linalg.inv(bread)
    inv = covariance_centre(inv)
    cov = inv @ meat @ inv
    return covariance_centre(0.5 * (cov + cov.T))


def one_sided(counts: PairCounts) -> np.ndarray:
    """(M,) int8: -1 for a model that never won a battle, +1 for one that never lost, 0 otherwise.

    Ties count as half a win, so a model with a tie is neither. Found by peeling: once such models are set
    aside, the battles among the rest are looked at again, until none is left to set aside.
    """
    m = counts.n_models
    flag = np.zeros(m, dtype=np.int8)
    won_first = counts.score
    lost_first = counts.total - won_first
    while True:
        free = flag == 0
        keep = free[counts.first] & free[counts.second] & (counts.total > 0)
        f, s = counts.first[keep], counts.second[keep]
        won = np.bincount(f, won_first[keep], m) + np.bincount(s, lost_first[keep], m)
        lost = np.bincount(f, lost_first[keep], m) + np.bincount(s, won_first[keep], m)
        played = (won + lost) > 0
        never_won = free & played & (won == 0)
        never_lost = free & played & (lost == 0)
        if not (never_won.any() or never_lost.any()):
            break
        flag[never_won] = -1
        flag[never_lost] = 1
    return flag


def centre_on(values: np.ndarray, regular: np.ndarray) -> np.ndarray:
    """(..., M) values shifted so that their mean over the models where ``regular`` (M,) holds is zero."""
    if regular.all() or not regular.any():
        return values - values.mean(axis=-1, keepdims=True)
    return values - values[..., regular].mean(axis=-1, keepdims=True)


def centre_covariance_on(cov: np.ndarray, regular: np.ndarray) -> np.ndarray:
    """(M, M) covariance of the values :func:`centre_on` gives: P cov P^T with P = I - 1 w^T, w the mean over
    the ``regular`` models."""
    if regular.all() or not regular.any():
        return covariance_centre(cov)
    w = regular / regular.sum()
    c = cov - (cov @ w)[:, None]
    return c - (w @ c)[None, :]


def model_covariance(counts: PairCounts, theta: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """(M, M) inverse-Hessian (Fisher) covariance of the centred ``theta``, natural units."""
    return covariance_centre(np.linalg.inv(hessian(counts, theta, ridge)))


def _incidence(counts: PairCounts) -> csr_matrix:
    """(P, M) sparse matrix with +1 at ``first`` and -1 at ``second`` of every pair."""
    p = counts.first.size
    rows = np.repeat(np.arange(p), 2)
    cols = np.column_stack([counts.first, counts.second]).ravel()
    vals = np.tile([1.0, -1.0], p)
    return csr_matrix((vals, (rows, cols)), shape=(p, counts.n_models))


def _fit_batch(
    counts: PairCounts,
    score: np.ndarray,
    total: np.ndarray,
    theta0: np.ndarray,
    ridge: float,
    incidence: csr_matrix,
    tol: float,
    max_iter: int,
    chord_iter: int = 40,
) -> np.ndarray:
    """Fit R problems sharing the pair structure at once. ``score``, ``total``: (R, P). Returns (R, M).

    First chord iterations (Newton steps with the full-data Hessian, inverted once, so one iteration is a
    matrix product for all rounds); a resample differs little from the data, so most rounds converge in a
    handful of them. Rounds that do not (a model that drew no battle, or only wins) finish with true batched
    Newton steps, which need one small linear solve per round and iteration.
    """
    r_count = score.shape[0]
    m = counts.n_models
    f, s = counts.first, counts.second
    inc_t = incidence.T.tocsr()
    abs_t = abs(incidence).T.tocsr()
    theta = np.broadcast_to(theta0, (r_count, m)).copy()
    mean_total = total.mean(axis=0)
    p0 = expit(theta0[f] - theta0[s])
    h0_inv = np.linalg.inv(_pair_matrix(counts, mean_total * p0 * (1.0 - p0), ridge))

    # The chord phase works on transposed (M, R) and (P, R) arrays so that every product is a contiguous
    # sparse or dense matrix product rather than a column gather.
    theta_t = np.ascontiguousarray(theta.T)
    score_t = np.ascontiguousarray(score.T)
    total_t = np.ascontiguousarray(total.T)
    active = np.arange(r_count)
    for _ in range(chord_iter):
        p = expit(incidence @ theta_t)
        grad = inc_t @ (total_t * p - score_t) + ridge * theta_t
        # Both the data gradient and the solution sum to zero over models; removing the rounding residue
        # keeps the ridge's 1 / ridge gain along the all-ones direction from amplifying it.
        grad -= grad.mean(axis=0)
        step = h0_inv @ grad
        theta_t -= step
        theta[active] = theta_t.T
        keep = np.max(np.abs(step), axis=0) >= tol
        if not keep.all():
            active = active[keep]
            if active.size == 0:
                return theta - theta.mean(axis=1, keepdims=True)
            theta_t, score_t, total_t = theta_t[:, keep], score_t[:, keep], total_t[:, keep]

    idx = np.arange(m)
    hess = np.zeros((active.size, m, m))
    for _ in range(max_iter):
        th = theta[active]
        p = expit(th[:, f] - th[:, s])
        tot = total[active]
        resid = tot * p - score[active]
        grad = (inc_t @ resid.T).T + ridge * th
        grad -= grad.mean(axis=1, keepdims=True)
        h = tot * p * (1.0 - p)
        hs = hess[: active.size]
        hs[:, f, s] = -h
        hs[:, s, f] = -h
        hs[:, idx, idx] = (abs_t @ h.T).T + ridge
        step = np.linalg.solve(hs, grad[:, :, None])[:, :, 0]
        big = np.max(np.abs(step), axis=1)
        step *= np.minimum(1.0, MAX_NEWTON_STEP / np.maximum(big, 1e-300))[:, None]
        theta[active] = th - step
        # Converged rounds drop out so that a few slow ones do not keep the whole chunk iterating.
        active = active[big >= tol]
        if active.size == 0:
            break
    return theta - theta.mean(axis=1, keepdims=True)


def bootstrap_thetas(
    counts: PairCounts,
    theta: np.ndarray,
    *,
    rounds: int = 1000,
    seed: int | np.random.Generator | None = 0,
    ridge: float = DEFAULT_RIDGE,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> np.ndarray:
    """Refit on ``rounds`` multinomial resamples of the battles; returns (rounds, M) centred thetas.

    Each round draws round(total weight) unit-weight battles over the (pair, outcome) cells with
    probability proportional to their weight, so integer weights behave as repeated rows. ``theta`` (M,) is
    the full-data estimate, used as the warm start. The same ``seed`` gives the same draws. ``tol`` is on
    the last step in natural units (1e-6 is 2e-4 score points, far below the bootstrap's own noise).
    """
    rng = np.random.default_rng(seed)
    m = counts.n_models
    pcount = counts.first.size
    cells = np.concatenate([counts.wins, counts.losses, counts.ties])
    total_weight = float(cells.sum())
    n_draw = max(1, int(round(total_weight)))
    prob = cells / total_weight
    incidence = _incidence(counts)
    chunk = int(max(1, min(_MAX_CHUNK, _CHUNK_DOUBLES // (m * m))))
    starts = list(range(0, rounds, chunk))
    # One generator per chunk, spawned from the seed: the same seed gives the same draws however many threads
    # share the chunks. The draws and most of the fit release the GIL, so the chunks run on every core.
    rngs = rng.spawn(len(starts))
    out = np.empty((rounds, m))

    def one_chunk(index: int) -> None:
        start = starts[index]
        k = min(chunk, rounds - start)
        draws = rngs[index].multinomial(n_draw, prob, size=k).astype(np.float64)
        wins = draws[:, :pcount]
        losses = draws[:, pcount : 2 * pcount]
        ties = draws[:, 2 * pcount :]
        out[start : start + k] = _fit_batch(
            counts, wins + 0.5 * ties, wins + losses + ties, theta, ridge, incidence, tol, max_iter
        )

    workers = min(len(starts), os.cpu_count() or 1)
    if workers <= 1:
        for index in range(len(starts)):
            one_chunk(index)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_chunk, range(len(starts))))
    return out


def z_value(level: float) -> float:
    """Two-sided normal quantile for a ``level`` interval (1.96 for 0.95)."""
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie strictly between 0 and 1")
    return float(ndtri(0.5 + level / 2.0))


def rank_upper_bound(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(M,) rank by LMArena's "Rank (UB)" rule: 1 + number of models whose lower bound exceeds my upper bound.

    ``lower``, ``upper``: (M,) interval bounds. Models whose intervals overlap share a rank.
    """
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    # Sorting the lower bounds turns the O(M^2) comparison into a binary search per model.
    sorted_lower = np.sort(lower)
    above = lower.size - np.searchsorted(sorted_lower, upper, side="right")
    return (1 + above).astype(np.int64)
