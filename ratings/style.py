"""Style control: Bradley-Terry with per-battle style covariates, as LMArena does it.

Following FastChat's ``compute_style_control`` and arena-rank's ``ContextualBradleyTerry``: for every battle
and every style feature (answer tokens, markdown headers, list items, bold spans) the two sides' counts a, b
become (a - b) / (a + b + 1), and each feature column is standardised over the battles (mean 0, standard
deviation 1). The model is

    logit P(A beats B) = theta_A - theta_B + z . beta

with z (K,) the battle's standardised features. The style coefficients beta carry a small L2 penalty
(``style_reg / 2 * |beta|^2``, 0.5 by default as in FastChat); theta carries only the same tiny ridge as the
plain fit, so the style-controlled scores are centred on 1000 like the raw ones. beta is reported in
log-odds per standard deviation of the feature; a positive beta means the side that is longer (has more
headers, ...) tends to win at equal strength.

The covariates differ per battle, so this fit cannot use pair totals; each Newton iteration is O(N K) and
its Hessian is assembled with bincounts. The sandwich uses the same bread/meat construction as the plain
fit; the bootstrap resamples battles and refits round by round (slower: prefer the sandwich here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from .bradley_terry import DEFAULT_RIDGE, MAX_NEWTON_STEP, covariance_centre

STYLE_FEATURES: tuple[str, ...] = ("tokens", "headers", "list_items", "bold")
"""Names of the four style features, in the order of :func:`style_counts`."""
DEFAULT_STYLE_REG = 0.5

_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_ORDERED_ITEM = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED_ITEM = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def style_counts(
    text: str, tokenizer: Callable[[str], Sequence[object]] | None = None
) -> tuple[int, int, int, int]:
    """Count (tokens, headers, list_items, bold) in one answer's markdown.

    Tokens: ``len(tokenizer(text))`` when a tokenizer is given, else the number of whitespace-separated
    words. Headers (``#`` to ``######`` at a line start), list items (ordered ``1.`` and unordered ``-``,
    ``*``, ``+``) and bold spans (``**x**`` or ``__x__`` on one line) are counted as FastChat does, outside
    fenced code blocks, since a ``#`` comment in code is not a header.
    """
    tokens = len(tokenizer(text)) if tokenizer is not None else len(text.split())
    prose = _CODE_BLOCK.sub("", text)
    headers = len(_HEADER.findall(prose))
    items = len(_ORDERED_ITEM.findall(prose)) + len(_UNORDERED_ITEM.findall(prose))
    bold = len(_BOLD_STARS.findall(prose)) + len(_BOLD_UNDERSCORES.findall(prose))
    return tokens, headers, items, bold


def style_features(style: np.ndarray) -> np.ndarray:
    """Standardised style covariates from raw per-side counts.

    ``style``: (N, 2, K) non-negative counts, ``style[:, 0]`` for side A and ``style[:, 1]`` for side B.
    Returns (N, K): (a - b) / (a + b + 1), each column shifted to mean 0 and scaled to standard deviation 1
    (a constant column is only shifted, since it carries no information to scale).
    """
    s = np.asarray(style, dtype=np.float64)
    if s.ndim != 3 or s.shape[1] != 2:
        raise ValueError("style must have shape (N, 2, K): per battle, the counts of side A and side B")
    if not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("style counts must be finite and non-negative")
    a, b = s[:, 0, :], s[:, 1, :]
    z = (a - b) / (a + b + 1.0)
    z = z - z.mean(axis=0)
    sd = z.std(axis=0)
    return z / np.where(sd > 0, sd, 1.0)


@dataclass(frozen=True)
class StyleFit:
    """Result of :func:`fit_style_controlled`.

    ``theta``: (M,) centred log-strengths (natural units); ``beta``: (K,) style coefficients in log-odds
    per standard deviation; ``covariance``: (M + K, M + K) sandwich covariance of (theta, beta), theta
    block centred.
    """

    theta: np.ndarray
    beta: np.ndarray
    covariance: np.ndarray


class _Design:
    """Battle arrays of a style fit and the bincount plumbing its Newton steps share."""

    def __init__(self, a: np.ndarray, b: np.ndarray, y: np.ndarray, z: np.ndarray, m: int):
        self.a, self.b, self.y, self.z, self.m = a, b, y, z, m
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        pairs, self.pair = np.unique(lo * m + hi, return_inverse=True)
        self.first, self.second = pairs // m, pairs % m

    def logits(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        return theta[self.a] - theta[self.b] + self.z @ beta

    def gradient(self, r: np.ndarray) -> np.ndarray:
        """(M + K,) sum over battles of r_i x_i with x_i = (e_a - e_b, z_i)."""
        m = self.m
        return np.concatenate([np.bincount(self.a, r, m) - np.bincount(self.b, r, m), self.z.T @ r])

    def outer(self, h: np.ndarray) -> np.ndarray:
        """(M + K, M + K) sum over battles of h_i x_i x_i^T."""
        m, k = self.m, self.z.shape[1]
        out = np.zeros((m + k, m + k))
        hp = np.bincount(self.pair, h, self.first.size)
        out[self.first, self.second] = -hp
        out[self.second, self.first] = -hp
        idx = np.arange(m)
        out[idx, idx] = np.bincount(self.a, h, m) + np.bincount(self.b, h, m)
        hz = h[:, None] * self.z
        cross = np.stack([np.bincount(self.a, hz[:, j], m) - np.bincount(self.b, hz[:, j], m) for j in range(k)], 1)
        out[:m, m:] = cross
        out[m:, :m] = cross.T
        out[m:, m:] = self.z.T @ hz
        return out

    def nll(self, params: np.ndarray, w: np.ndarray, ridge: float, style_reg: float) -> float:
        m = self.m
        x = self.logits(params[:m], params[m:])
        data = np.dot(w * self.y, np.logaddexp(0.0, -x)) + np.dot(w * (1.0 - self.y), np.logaddexp(0.0, x))
        return float(data + 0.5 * ridge * params[:m] @ params[:m] + 0.5 * style_reg * params[m:] @ params[m:])


def _newton(
    d: _Design, w: np.ndarray, params: np.ndarray, ridge: float, style_reg: float, tol: float, max_iter: int
) -> np.ndarray:
    m = d.m
    penalty = np.concatenate([np.full(m, ridge), np.full(d.z.shape[1], style_reg)])
    f = d.nll(params, w, ridge, style_reg)
    for _ in range(max_iter):
        p = expit(d.logits(params[:m], params[m:]))
        g = d.gradient(w * (p - d.y)) + penalty * params
        h = d.outer(w * p * (1.0 - p))
        h[np.diag_indices_from(h)] += penalty
        step = np.linalg.solve(h, g)
        big = np.max(np.abs(step))
        if big > MAX_NEWTON_STEP:
            step *= MAX_NEWTON_STEP / big
        t = 1.0
        while True:
            cand = params - t * step
            f_new = d.nll(cand, w, ridge, style_reg)
            if f_new <= f - 1e-4 * t * np.dot(g, step) or t < 1e-8:
                break
            t *= 0.5
        previous = f
        params, f = cand, f_new
        # The step test alone never passes at millions of battles: rounding in the O(N) sums keeps steps above
        # `tol`. Stop too once the Newton decrement says the objective cannot improve beyond its rounding.
        decrement = float(np.dot(g, step))
        if np.max(np.abs(t * step)) < tol or decrement < 1e-12 * max(1.0, abs(previous)):
            break
    params = params.copy()
    params[:m] -= params[:m].mean()
    return params


def _sandwich(d: _Design, w: np.ndarray, params: np.ndarray, ridge: float, style_reg: float) -> np.ndarray:
    m = d.m
    p = expit(d.logits(params[:m], params[m:]))
    bread = d.outer(w * p * (1.0 - p))
    bread[np.diag_indices_from(bread)] += np.concatenate([np.full(m, ridge), np.full(d.z.shape[1], style_reg)])
    meat = d.outer(w * (d.y - p) ** 2)
    inv = np.linalg.inv(bread)
    cov = inv @ meat @ inv
    cov = 0.5 * (cov + cov.T)
    # Only theta is defined up to a shift; centre its block and its cross terms with beta.
    cov[:m, :m] = covariance_centre(cov[:m, :m])
    cov[:m, m:] -= cov[:m, m:].mean(axis=0, keepdims=True)
    cov[m:, :m] = cov[:m, m:].T
    return cov


def fit_style_controlled(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    features: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    ridge: float = DEFAULT_RIDGE,
    style_reg: float = DEFAULT_STYLE_REG,
    tol: float = 1e-10,
    max_iter: int = 500,
) -> StyleFit:
    """Fit Bradley-Terry with style covariates and its sandwich covariance.

    ``model_a``, ``model_b``: (N,) model indices; ``outcome``: (N,) 1 / 0 / 0.5; ``features``: (N, K)
    covariates, already standardised (see :func:`style_features`); ``weights``: (N,) frequency weights.
    """
    d = _make_design(model_a, model_b, outcome, n_models, features)
    w = np.ones(d.a.size) if weights is None else np.asarray(weights, dtype=np.float64)
    params = _newton(d, w, np.zeros(n_models + d.z.shape[1]), ridge, style_reg, tol, max_iter)
    cov = _sandwich(d, w, params, ridge, style_reg)
    return StyleFit(theta=params[:n_models], beta=params[n_models:], covariance=cov)


def _make_design(model_a, model_b, outcome, n_models: int, features) -> _Design:
    a = np.asarray(model_a, dtype=np.int64)
    b = np.asarray(model_b, dtype=np.int64)
    y = np.asarray(outcome, dtype=np.float64)
    z = np.asarray(features, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != a.size:
        raise ValueError("features must have shape (N, K) with one row per battle")
    return _Design(a, b, y, z, int(n_models))


def bootstrap_style(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    features: np.ndarray,
    start: StyleFit,
    weights: np.ndarray | None = None,
    *,
    rounds: int = 1000,
    seed: int | np.random.Generator | None = 0,
    ridge: float = DEFAULT_RIDGE,
    style_reg: float = DEFAULT_STYLE_REG,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> np.ndarray:
    """Refit the style model on ``rounds`` multinomial resamples of the battles, warm-started at ``start``.

    Returns (rounds, M + K): centred theta then beta. Resampling draws round(total weight) battles with
    probability proportional to weight, as the plain bootstrap does. O(rounds * N) time.
    """
    d = _make_design(model_a, model_b, outcome, n_models, features)
    w = np.ones(d.a.size) if weights is None else np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    total = float(w.sum())
    n_draw = max(1, int(round(total)))
    prob = w / total
    x0 = np.concatenate([start.theta, start.beta])
    out = np.empty((rounds, x0.size))
    for r in range(rounds):
        wr = rng.multinomial(n_draw, prob).astype(np.float64)
        out[r] = _newton(d, wr, x0, ridge, style_reg, tol, max_iter)
    return out
