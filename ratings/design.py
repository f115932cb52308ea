"""Which pair's next vote is worth the most: pair weights for active sampling, from the current fit.

A vote on pair (a, b) adds h = p (1 - p) / SCALE^2 of Fisher information along u = e_a - e_b (p the fitted chance
that a beats b, scores in points). By Sherman-Morrison the variance of a contrast c (a score difference the team
cares about) then falls from c' S c to c' S c - h (c' S u)^2 / (1 + h u' S u), S the (M, M) covariance of the
scores. The value of the pair is the sum over the target contrasts of

    weight_c * open_c * (variance reduction of c) / (variance of c)

i.e. the relative shrinkage of each target's interval, counted fully while the target is undecided and less once
it is: open_c = min(1, (half-width_c / |difference_c|)^2), with the confidence sequence's half-width
(:func:`~ratings.sequential.sequence_half_width`), so a pair already clear stops drawing battles. A vote on a pair
that never met but whose models both met others still shrinks the contrast through the covariance.

The sampling distribution over pairs is then (:func:`blend_pair_weights`)

    q = (1 - floor) * ((1 - strength) * base + strength * value / sum(value)) + floor * uniform

over the eligible pairs, ``base`` the configured distribution (sampling weights, in-house share, rivals), so every
eligible pair keeps at least floor / (number of eligible pairs) of the draws, and strength 0 gives back the
configured draw when floor is 0.

Targets (:func:`decision_targets`): for each in-house model, its gap to its parent and to named rivals (weight 1),
to its board neighbours (weight 0.25); and the adjacent pairs of the public ranking whose intervals overlap (weight
0.1), so the board's own order keeps being settled.

Why value ** 4 (``sharpness``): drawn in proportion to the value itself, a target whose value falls like
1 / (its votes) ends with votes growing only like the square root of its weight, and the votes spread thinly over
every open target; the fourth power brings the split close to the weights (votes ~ weight ** 0.8). The weights and
the power were chosen on benchmarks/bench_decisions.py (an 8-model arena): with the neighbours and the public order
weighted as heavily as the parent (0.5, 0.25) or with the plain value (power 1), active sampling saved only 15 to
25% of the votes to a verdict on the parent gap; with these defaults about half. The floor of 0.2 (the share
of draws spread evenly over the eligible pairs) keeps the adaptive draw from starving the models whose gaps look
settled: with 0.1, the least-drawn model's score ended biased outward by 0.11 of its interval's width after 5,000
votes (a model estimated far from its neighbours draws fewer votes to correct it); with 0.2, 0.085.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .bradley_terry import SCALE
from .sequential import sequence_half_width


def decision_targets(
    scores: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    inhouse: Iterable[int] = (),
    parents: dict[int, int] | None = None,
    rivals: Iterable[int] = (),
    neighbours: int = 1,
    parent_weight: float = 1.0,
    rival_weight: float = 1.0,
    neighbour_weight: float = 0.25,
    public_weight: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """The contrasts that matter: ``(pairs (T, 2) int, weights (T,))``. ``scores``, ``lower``, ``upper``: (M,)
    the board; ``inhouse``: indices of the team's models; ``parents``: child index -> parent index; ``rivals``:
    indices of named rivals; ``neighbours``: how many models above and below each in-house model count as its
    board neighbours. The ``*_weight`` arguments weigh each kind of target: "is the new version better than its
    parent" and the named rivals first, the board position next, the public order last. A pair named twice keeps
    its largest weight."""
    scores = np.asarray(scores, dtype=np.float64)
    m = scores.size
    order = np.argsort(-scores, kind="stable")
    position = np.empty(m, dtype=np.int64)
    position[order] = np.arange(m)
    found: dict[tuple[int, int], float] = {}

    def add(i: int, j: int, w: float) -> None:
        if i != j and w > 0:
            key = (min(i, j), max(i, j))
            found[key] = max(found.get(key, 0.0), w)

    parents = parents or {}
    rivals = list(rivals)
    for i in inhouse:
        if i in parents:
            add(i, parents[i], parent_weight)
        for step in range(1, neighbours + 1):
            for k in (position[i] - step, position[i] + step):
                if 0 <= k < m:
                    add(i, int(order[k]), neighbour_weight)
        for r in rivals:
            add(i, r, rival_weight)
    for k in range(m - 1):
        a, b = int(order[k]), int(order[k + 1])
        if lower[a] <= upper[b]:
            add(a, b, public_weight)
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    pairs = np.array(list(found), dtype=np.int64)
    return pairs, np.array(list(found.values()))


def pair_values(
    scores: np.ndarray,
    covariance: np.ndarray,
    targets: np.ndarray,
    target_weights: np.ndarray,
    *,
    alpha: float = 0.05,
) -> np.ndarray:
    """(M, M) symmetric value of one more vote on each pair (zero diagonal), see the module notes.

    ``scores`` (M,) and ``covariance`` (M, M) in points; ``targets`` (T, 2) index pairs; ``target_weights`` (T,).
    """
    scores = np.asarray(scores, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    m = scores.size
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
    out = np.zeros((m, m))
    if targets.shape[0] == 0 or m < 2:
        return out
    ia, ib = np.triu_indices(m, 1)
    d = scores[ia] - scores[ib]
    p = 1.0 / (1.0 + np.exp(-d / SCALE))
    h = p * (1.0 - p) / SCALE**2
    # S u for every candidate pair u = e_a - e_b: (M, P); u' S u: (P,)
    su = cov[:, ia] - cov[:, ib]
    usu = su[ia, np.arange(ia.size)] - su[ib, np.arange(ia.size)]
    # c' S u for every target c: (T, P)
    csu = su[targets[:, 0]] - su[targets[:, 1]]
    tc = targets[:, 0], targets[:, 1]
    var_c = cov[tc[0], tc[0]] + cov[tc[1], tc[1]] - 2.0 * cov[tc[0], tc[1]]
    diff_c = scores[tc[0]] - scores[tc[1]]
    half = sequence_half_width(np.maximum(var_c, 0.0), alpha=alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        open_c = np.where(np.abs(diff_c) > 0, np.minimum(1.0, (half / np.abs(diff_c)) ** 2), 1.0)
        rel = np.where(var_c[:, None] > 0, csu**2 / var_c[:, None], 0.0)
    reduction = rel * (h / (1.0 + h * usu))[None, :]
    value = (np.asarray(target_weights, dtype=np.float64) * open_c) @ reduction
    out[ia, ib] = value
    out[ib, ia] = value
    return out


def blend_pair_weights(
    base: np.ndarray,
    value: np.ndarray,
    eligible: np.ndarray,
    *,
    strength: float,
    floor: float = 0.2,
    sharpness: float = 4.0,
) -> np.ndarray:
    """(M, M) symmetric probabilities of each unordered pair (each pair's probability on both (a, b) and (b, a),
    upper triangle summing to 1). ``base``: (M, M) configured probabilities (or weights) of the pairs;
    ``value``: (M, M) from :func:`pair_values`, drawn in proportion to value ** ``sharpness``; ``eligible``: (M, M) bool, pairs that may meet. Pairs outside
    ``eligible`` get 0; with no value anywhere the active part falls back to ``base``."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError("strength must lie in [0, 1]")
    if not 0.0 <= floor <= 1.0:
        raise ValueError("floor must lie in [0, 1]")
    m = eligible.shape[0]
    ia, ib = np.triu_indices(m, 1)
    ok = np.asarray(eligible, dtype=bool)[ia, ib]
    if not ok.any():
        raise ValueError("no eligible pair")

    def normalised(x: np.ndarray) -> np.ndarray | None:
        x = np.where(ok, np.maximum(x, 0.0), 0.0)
        s = x.sum()
        return x / s if s > 0 else None

    uniform = ok / ok.sum()
    b = normalised(np.asarray(base, dtype=np.float64)[ia, ib])
    if b is None:
        b = uniform
    v = normalised(np.maximum(np.asarray(value, dtype=np.float64)[ia, ib], 0.0) ** sharpness)
    if v is None:
        v = b
    q = (1.0 - floor) * ((1.0 - strength) * b + strength * v) + floor * uniform
    out = np.zeros((m, m))
    out[ia, ib] = q
    out[ib, ia] = q
    return out

