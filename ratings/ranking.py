"""The high-level entry the web app calls (:func:`rate`), its result (:class:`Ranking`) and the CSV writer."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np
from threadpoolctl import threadpool_limits

from .bradley_terry import (
    DEFAULT_RIDGE,
    INIT_SCORE,
    SCALE,
    arena_rank_bread_ridge,
    bootstrap_thetas,
    centre_covariance_on,
    centre_on,
    fit_bradley_terry,
    one_sided,
    rank_upper_bound,
    sandwich_covariance,
    z_value,
)
from .pairs import aggregate
from .style import (
    DEFAULT_STYLE_REG,
    STYLE_FEATURES,
    bootstrap_style,
    fit_style_controlled,
    style_features,
)
from .weights import inverse_pair_frequency, prompt_repeat_weights

CI_METHODS = ("sandwich", "bootstrap")
# Up to this many models the dense solves take milliseconds; BLAS threads only spin against each other (and
# against whatever else shares the cores: a 2 ms fit took 0.46 s under load), so they run on one thread.
_ONE_THREAD_MODELS = 2000


@dataclass(frozen=True, eq=False)
class Ranking:
    """A fitted leaderboard. Every array is indexed like ``names`` (input order, not sorted).

    ``scores``, ``lower``, ``upper``: (M,) Bradley-Terry scores on the 400 scale and their interval bounds;
    ``rank``: (M,) "Rank (UB)" (see :func:`rank_upper_bound`); ``votes``: (M,) weight of the battles each
    model took part in; ``covariance``: (M, M) covariance of the scores (sandwich, or the bootstrap sample
    covariance); ``pair_battles``: (M, M) weight of battles per pair. With an anchor, scores, intervals and
    covariance are relative to the anchored model (whose interval has zero width).

    With style control, the ``style_*`` fields hold the same for the style-controlled fit, and
    ``style_coefficients`` (K,) the style effects in log-odds per standard deviation of each feature
    (``style_coefficient_lower`` / ``_upper`` their interval); otherwise they are None.

    ``one_sided``: (M,) int8, -1 for a model that never won (its score is a placeholder far below), +1 for
    one that never lost, 0 otherwise (see :func:`~ratings.bradley_terry.one_sided`); unanchored scores are
    centred on the models marked 0. ``arena_rank_compatible``: the sandwich used arena-rank's bread.
    """

    names: tuple[str, ...]
    scores: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    rank: np.ndarray
    votes: np.ndarray
    covariance: np.ndarray
    pair_battles: np.ndarray
    ci: str = "sandwich"
    level: float = 0.95
    anchor: tuple[str, float] | None = None
    style_features: tuple[str, ...] | None = None
    style_coefficients: np.ndarray | None = None
    style_coefficient_lower: np.ndarray | None = None
    style_coefficient_upper: np.ndarray | None = None
    style_scores: np.ndarray | None = None
    style_lower: np.ndarray | None = None
    style_upper: np.ndarray | None = None
    style_rank: np.ndarray | None = None
    style_covariance: np.ndarray | None = None
    one_sided: np.ndarray | None = None
    arena_rank_compatible: bool = False

    def never_won(self) -> list[str]:
        """Models that lost every battle: their score is a placeholder far below the rest, not an estimate."""
        return [] if self.one_sided is None else [self.names[i] for i in np.flatnonzero(self.one_sided < 0)]

    def never_lost(self) -> list[str]:
        """Models that won every battle: their score is a placeholder far above the rest, not an estimate."""
        return [] if self.one_sided is None else [self.names[i] for i in np.flatnonzero(self.one_sided > 0)]

    def index(self, name: str) -> int:
        """Position of model ``name``; KeyError if unknown."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown model {name!r}") from None

    def order(self) -> np.ndarray:
        """(M,) indices best first: by score (highest first), then by name.

        Not by rank: "Rank (UB)" is not monotone in the score (a wide interval can rank a lower score
        better), and arena-rank and LMArena list models by score.
        """
        return np.array(
            sorted(range(len(self.names)), key=lambda i: (-self.scores[i], self.names[i])), dtype=np.int64
        )


def _anchor_matrix(cov: np.ndarray, k: int) -> np.ndarray:
    """Covariance of (s_i - s_k): J cov J^T with J = I - 1 e_k^T."""
    return cov - cov[:, [k]] - cov[[k], :] + cov[k, k]


def _shift(scores: np.ndarray, k: int | None, value: float) -> np.ndarray:
    """Scores (..., M) moved so that model k sits at ``value``; unchanged when k is None."""
    if k is None:
        return scores
    return scores + (value - scores[..., [k]])


def rate(
    model_a_idx: np.ndarray,
    model_b_idx: np.ndarray,
    outcome: np.ndarray,
    names: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    ci: str = "sandwich",
    rounds: int = 1000,
    seed: int = 0,
    anchor: tuple[str, float] | None = None,
    style: np.ndarray | None = None,
    style_names: Sequence[str] | None = None,
    level: float = 0.95,
    ridge: float = DEFAULT_RIDGE,
    style_reg: float = DEFAULT_STYLE_REG,
    arena_rank_compatible: bool = False,
    balance_pairs: bool = False,
    prompts: np.ndarray | None = None,
    prompt_cap: float | None = None,
) -> Ranking:
    """Fit a Bradley-Terry leaderboard with intervals, optionally anchored and style-controlled.

    ``model_a_idx``, ``model_b_idx``: (N,) integer indices into ``names`` (M names); ``outcome``: (N,) 1 if
    A won, 0 if B won, 0.5 for a tie or both-bad; ``weights``: (N,) frequency weights. ``ci``: "sandwich"
    (default, arena-rank's) or "bootstrap" (``rounds`` resamples, reproducible by ``seed``); ``level``: the
    interval's coverage. ``anchor``: (model name, score) to pin that model at that score instead of centring
    the scores on 1000. ``style``: (N, 2, K) raw per-side style counts (see :func:`style_counts`; K = 4 in
    the order of ``STYLE_FEATURES`` unless ``style_names`` says otherwise) to add a style-controlled fit.

    Sandwich intervals are those of the plain sandwich (the Hessian as bread). arena-rank 0.1.1 adds 1e-5 x
    the number of battles to the bread's diagonal, which narrows the intervals of rarely seen models;
    ``arena_rank_compatible=True`` does the same and reproduces its interval widths (to 0.5 points; see
    ``ratings.bradley_terry``). It changes nothing with ``ci="bootstrap"``. A model that never won or never
    lost (``Ranking.one_sided``) keeps a placeholder score and is left out of the centring, so the other
    scores still average 1000.

    ``balance_pairs``: weight each battle by the inverse of its pair's frequency (every pair then carries the
    same total weight; :func:`~ratings.weights.inverse_pair_frequency`). ``prompts`` (N,) prompt codes with
    ``prompt_cap``: a prompt seen more than ``prompt_cap`` times gives each vote weight cap / count
    (:func:`~ratings.weights.prompt_repeat_weights`). Both multiply ``weights``.

    Raises :class:`DisconnectedGraphError` when the battles do not link all M models, ValueError on
    malformed input.
    """
    names = tuple(str(n) for n in names)
    m = len(names)
    if len(set(names)) != m:
        raise ValueError("model names must be unique")
    if ci not in CI_METHODS:
        raise ValueError(f"ci must be one of {CI_METHODS}, not {ci!r}")
    if ci == "bootstrap" and rounds < 2:
        raise ValueError("a bootstrap needs at least 2 rounds")
    z = z_value(level)
    k_anchor: int | None = None
    anchor_value = 0.0
    if anchor is not None:
        name, anchor_value = anchor
        if name not in names:
            raise ValueError(f"anchor model {name!r} is not among the models")
        k_anchor = names.index(name)
        anchor_value = float(anchor_value)

    a = np.asarray(model_a_idx)
    b = np.asarray(model_b_idx)
    y = np.asarray(outcome)
    if not np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float64)
    if balance_pairs or prompt_cap is not None:
        w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=np.float64)
        if balance_pairs:
            w = w * inverse_pair_frequency(a, b, m)
        if prompt_cap is not None:
            if prompts is None or np.shape(prompts) != y.shape:
                raise ValueError("prompt_cap needs prompts, one per battle")
            w = w * prompt_repeat_weights(prompts, prompt_cap)
        weights = w
    with threadpool_limits(limits=1 if m <= _ONE_THREAD_MODELS else None, user_api="blas"):
        return _rate(a, b, y, names, weights=weights, ci=ci, rounds=rounds, seed=seed, k_anchor=k_anchor,
                     anchor_value=anchor_value, style=style, style_names=style_names, level=level, z=z, ridge=ridge,
                     style_reg=style_reg, arena_rank_compatible=arena_rank_compatible)


def _rate(a, b, y, names, *, weights, ci, rounds, seed, k_anchor, anchor_value, style, style_names, level, z, ridge,
          style_reg, arena_rank_compatible) -> Ranking:
    m = len(names)
    counts = aggregate(a, b, y, m, weights)
    counts.check_connected(list(names))
    sided = one_sided(counts)
    regular = sided == 0
    theta = centre_on(fit_bradley_terry(counts, ridge=ridge), regular)
    scores = _shift(INIT_SCORE + SCALE * theta, k_anchor, anchor_value)
    alpha = 1.0 - level
    bread_ridge = arena_rank_bread_ridge(counts) if arena_rank_compatible else None

    if ci == "sandwich":
        cov = SCALE**2 * centre_covariance_on(sandwich_covariance(counts, theta, ridge, bread_ridge=bread_ridge), regular)
        if k_anchor is not None:
            cov = _anchor_matrix(cov, k_anchor)
        se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        lower, upper = scores - z * se, scores + z * se
    else:
        thetas = centre_on(bootstrap_thetas(counts, theta, rounds=rounds, seed=seed, ridge=ridge), regular)
        samples = _shift(INIT_SCORE + SCALE * thetas, k_anchor, anchor_value)
        lower, upper = np.quantile(samples, [alpha / 2, 1 - alpha / 2], axis=0)
        cov = np.cov(samples, rowvar=False)

    extra: dict[str, object] = {}
    if style is not None:
        y = y.astype(np.float64, copy=False)
        style_arr = np.asarray(style)  # counts stay in their own dtype: style_features reads them chunk by chunk
        if style_arr.ndim != 3 or style_arr.shape[:2] != (a.size, 2):
            raise ValueError("style must have shape (N, 2, K): per battle, the counts of side A and side B")
        kf = style_arr.shape[2]
        feat_names = tuple(style_names) if style_names is not None else (
            STYLE_FEATURES if kf == len(STYLE_FEATURES) else tuple(f"style_{j}" for j in range(kf))
        )
        if len(feat_names) != kf:
            raise ValueError("style_names must name every style feature")
        feats = style_features(style_arr)
        fit = fit_style_controlled(a, b, y, m, feats, weights, ridge=ridge, style_reg=style_reg, start=theta)
        s_scores = _shift(INIT_SCORE + SCALE * centre_on(fit.theta, regular), k_anchor, anchor_value)
        if ci == "sandwich":
            s_cov = SCALE**2 * centre_covariance_on(fit.covariance[:m, :m], regular)
            if k_anchor is not None:
                s_cov = _anchor_matrix(s_cov, k_anchor)
            s_se = np.sqrt(np.clip(np.diag(s_cov), 0.0, None))
            s_lower, s_upper = s_scores - z * s_se, s_scores + z * s_se
            b_se = np.sqrt(np.clip(np.diag(fit.covariance)[m:], 0.0, None))
            b_lower, b_upper = fit.beta - z * b_se, fit.beta + z * b_se
        else:
            boot = bootstrap_style(a, b, y, m, feats, fit, weights, rounds=rounds, seed=seed, ridge=ridge, style_reg=style_reg)
            s_samples = _shift(INIT_SCORE + SCALE * centre_on(boot[:, :m], regular), k_anchor, anchor_value)
            s_lower, s_upper = np.quantile(s_samples, [alpha / 2, 1 - alpha / 2], axis=0)
            s_cov = np.cov(s_samples, rowvar=False)
            b_lower, b_upper = np.quantile(boot[:, m:], [alpha / 2, 1 - alpha / 2], axis=0)
        extra = dict(
            style_features=feat_names,
            style_coefficients=fit.beta,
            style_coefficient_lower=b_lower,
            style_coefficient_upper=b_upper,
            style_scores=s_scores,
            style_lower=s_lower,
            style_upper=s_upper,
            style_rank=rank_upper_bound(s_lower, s_upper),
            style_covariance=s_cov,
        )

    return Ranking(
        names=names,
        scores=scores,
        lower=lower,
        upper=upper,
        rank=rank_upper_bound(lower, upper),
        votes=counts.votes(),
        covariance=cov,
        pair_battles=counts.battle_matrix(),
        ci=ci,
        level=level,
        anchor=None if k_anchor is None else (names[k_anchor], anchor_value),
        one_sided=sided,
        arena_rank_compatible=bool(arena_rank_compatible and ci == "sandwich"),
        **extra,
    )


def one_sided_warnings(ranking: Ranking) -> list[str]:
    """One sentence per model that never won or never lost, for standard error or a page."""
    out = []
    for names, what, where in ((ranking.never_won(), "never won", "below"), (ranking.never_lost(), "never lost", "above")):
        for name in names:
            votes = ranking.votes[ranking.index(name)]
            out.append(
                f"{name} {what} a battle ({votes:g} battles): its score is a placeholder far {where} the others, "
                "not an estimate, and the other scores are centred without it"
            )
    return out


RANKING_COLUMNS = ("rank", "model", "score", "lower", "upper", "votes")
STYLE_COLUMNS = ("style_rank", "style_score", "style_lower", "style_upper")


def _number(x: float) -> str:
    return f"{x:.4f}"


def _votes(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4f}"


def ranking_to_csv(ranking: Ranking, out: TextIO | None = None) -> str:
    """Write ``ranking`` as CSV, highest score first, and return the text.

    Columns: ``rank,model,score,lower,upper,votes`` (4 decimals; votes as an integer when whole), followed
    by ``style_rank,style_score,style_lower,style_upper`` when the ranking is style-controlled. Writes to
    ``out`` too when given.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    styled = ranking.style_scores is not None
    writer.writerow(RANKING_COLUMNS + (STYLE_COLUMNS if styled else ()))
    for i in ranking.order():
        row = [
            str(int(ranking.rank[i])),
            ranking.names[i],
            _number(ranking.scores[i]),
            _number(ranking.lower[i]),
            _number(ranking.upper[i]),
            _votes(ranking.votes[i]),
        ]
        if styled:
            row += [
                str(int(ranking.style_rank[i])),
                _number(ranking.style_scores[i]),
                _number(ranking.style_lower[i]),
                _number(ranking.style_upper[i]),
            ]
        writer.writerow(row)
    text = buf.getvalue()
    if out is not None:
        out.write(text)
    return text
