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

The covariates differ per battle, so this fit cannot use pair totals; each Newton iteration is O(N K). The
battles are walked in chunks of ``CHUNK`` rows, so every temporary is a chunk's and stays in cache, and what a
step needs is summed per ordered pair of models (one bincount per quantity and chunk), then spread onto the
models: memory is the features, one pair code and three floats per battle (logits, the step's direction, win
probabilities). The line search moves the logits
along the step's direction rather than recomputing them from the parameters. The sandwich uses the same
bread/meat construction as the plain fit; the bootstrap resamples battles and refits round by round
(slower: prefer the sandwich here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from .bradley_terry import DEFAULT_RIDGE, MAX_NEWTON_STEP, covariance_centre

STYLE_FEATURES: tuple[str, ...] = ("tokens", "headers", "list_items", "bold")
"""Names of the four style features, in the order of :func:`style_counts`."""
DEFAULT_STYLE_REG = 0.5

_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
# The indent is whitespace other than a newline: with \s* it ran on across blank lines from every line start,
# reading a run of n blank lines n times (an answer of blank lines cost quadratic time); the counts are the same.
_ORDERED_ITEM = re.compile(r"^[^\S\n]*+\d+\.\s", re.MULTILINE)
_UNORDERED_ITEM = re.compile(r"^[^\S\n]*+[-*+]\s", re.MULTILINE)
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

    ``style``: (N, 2, K) non-negative counts (any integer or float dtype), ``style[:, 0]`` for side A and
    ``style[:, 1]`` for side B. Returns (N, K) float64 in Fortran order: (a - b) / (a + b + 1), each column
    shifted to mean 0 and scaled to standard deviation 1 (a constant column is only shifted, since it carries
    no information to scale). Computed chunk by chunk: beside the result, memory is a chunk's.
    """
    s = np.asarray(style)
    if s.ndim != 3 or s.shape[1] != 2:
        raise ValueError("style must have shape (N, 2, K): per battle, the counts of side A and side B")
    if not (np.issubdtype(s.dtype, np.integer) or np.issubdtype(s.dtype, np.floating)):
        raise ValueError("style counts must be numbers")
    n, k = s.shape[0], s.shape[2]
    z = np.empty((n, k), order="F")  # column by column: the fit's passes read one feature at a time
    for sl in _chunks(n):
        part = s[sl]
        if np.issubdtype(s.dtype, np.floating) and not np.isfinite(part).all():
            raise ValueError("style counts must be finite and non-negative")
        if part.size and part.min() < 0:
            raise ValueError("style counts must be finite and non-negative")
        for j in range(k):  # one feature at a time, written into its contiguous column
            a = part[:, 0, j].astype(np.float64)
            b = part[:, 1, j].astype(np.float64)
            total = a + b
            total += 1.0
            a -= b
            np.divide(a, total, out=z[sl, j])
    if n == 0:
        return z
    z -= z.mean(axis=0)
    square = np.zeros(k)
    for sl in _chunks(n):
        square += np.einsum("ij,ij->j", z[sl], z[sl])
    sd = np.sqrt(square / n)
    z /= np.where(sd > 0, sd, 1.0)
    return z


CHUNK = 1 << 16
"""Battles per chunk of the style fit's passes: a chunk's temporaries (a few times 64k floats) stay in cache."""


def _chunks(n: int, size: int = CHUNK) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _ordered_pairs(a: np.ndarray, b: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) index of each battle's ordered pair (A, B) among the pairs present, and those pairs' (P,) A and B."""
    code = a.astype(np.int64) * m + b
    if m * m <= 1 << 24:  # a dense table of codes: O(N), no sort
        present = np.bincount(code, minlength=m * m) > 0
        codes = np.flatnonzero(present)
        lookup = np.cumsum(present) - 1
        pair = lookup[code]
    else:
        codes, pair = np.unique(code, return_inverse=True)
    dtype = np.int32 if codes.size < 2**31 else np.int64
    return pair.astype(dtype), codes // m, codes % m


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
    """Battle arrays of a style fit and the chunked sums its Newton steps and its sandwich take.

    ``pair``: (N,) ordered pair of each battle; ``first``, ``second``: (P,) the pairs' models. A battle's
    design row is x_i = (e_A - e_B, z_i), so every sum over battles of v_i x_i (or v_i x_i x_i^T) is a sum
    per pair, spread onto the models, plus z's own part.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, y: np.ndarray, z: np.ndarray, m: int):
        self.y, self.z, self.m = y, np.asfortranarray(z), m
        self.n, self.k = y.size, z.shape[1]
        self.pair, self.first, self.second = _ordered_pairs(a, b, m)
        self.size = max(CHUNK, 4 * self.first.size)  # a bincount's output is small beside its chunk

    def chunks(self) -> Iterator[slice]:
        return _chunks(self.n, self.size)

    def logits(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """(N,) theta_A - theta_B + z . beta."""
        per_pair = theta[self.first] - theta[self.second]
        x = np.empty(self.n)
        for sl in self.chunks():
            np.add(per_pair[self.pair[sl]], self.z[sl] @ beta, out=x[sl])
        return x

    def data_nll(self, x: np.ndarray, w: np.ndarray | None, p: np.ndarray, dx: np.ndarray | None = None,
                 t: float = 0.0) -> float:
        """Negative log-likelihood of the battles at logits ``x - t dx``: sum of w (log(1 + e^x) - y x). Writes
        each battle's win probability there into ``p``, for the step that follows if this point is taken."""
        total = 0.0
        for sl in self.chunks():
            xs = x[sl] if dx is None else x[sl] - t * dx[sl]
            # One exponential serves both: with e = e^-|x|, P = 1 / (1 + e) (or e / (1 + e) for x < 0) and
            # log(1 + e^x) = max(x, 0) + log(1 + e). Where e is below rounding, that term is below 1e-16.
            e = np.exp(-np.abs(xs))
            loss = e + 1.0
            np.divide(np.where(xs >= 0.0, 1.0, e), loss, out=p[sl])
            np.log(loss, out=loss)
            loss += np.maximum(xs, 0.0)
            loss -= self.y[sl] * xs
            total += float(loss.sum() if w is None else np.dot(w[sl], loss))
        return total

    def sums(self, p: np.ndarray, w: np.ndarray | None, weights: Callable, second: int) -> tuple[list, list]:
        """Per chunk of the win probabilities ``p``, ``weights(p, y, w)`` gives vectors v (one per quantity);
        returns, for each, the per-pair sums of v and z^T v, and for the first ``second`` of them also the
        per-pair sums of v z and z^T (v z)."""
        parts: list[list[np.ndarray]] | None = None
        for sl in self.chunks():
            vs = weights(p[sl], self.y[sl], None if w is None else w[sl])
            pair, zc = self.pair[sl], self.z[sl]
            got = []
            for j, v in enumerate(vs):
                row = [np.bincount(pair, v, self.first.size), zc.T @ v]
                if j < second:
                    vz = zc * v[:, None]  # Fortran order, as z: each feature's column is contiguous
                    row += [np.stack([np.bincount(pair, vz[:, c], self.first.size) for c in range(self.k)], 1),
                            zc.T @ vz]
                got.append(row)
            if parts is None:
                parts = got
            else:
                for acc, row in zip(parts, got):
                    for i, value in enumerate(row):
                        acc[i] += value
        if parts is None:
            raise ValueError("a style fit needs at least one battle")
        return parts

    def gradient(self, per_pair: np.ndarray, zv: np.ndarray) -> np.ndarray:
        """(M + K,) sum over battles of v_i x_i, from its per-pair sums and z^T v."""
        m = self.m
        return np.concatenate([np.bincount(self.first, per_pair, m) - np.bincount(self.second, per_pair, m), zv])

    def outer(self, per_pair: np.ndarray, pair_z: np.ndarray, zvz: np.ndarray) -> np.ndarray:
        """(M + K, M + K) sum over battles of v_i x_i x_i^T, from its per-pair sums of v and v z, and z^T (v z)."""
        m, k = self.m, self.k
        out = np.zeros((m + k, m + k))
        theta = out[:m, :m]
        np.add.at(theta, (self.first, self.second), -per_pair)
        np.add.at(theta, (self.second, self.first), -per_pair)
        idx = np.arange(m)
        theta[idx, idx] = np.bincount(self.first, per_pair, m) + np.bincount(self.second, per_pair, m)
        cross = np.stack([np.bincount(self.first, pair_z[:, c], m) - np.bincount(self.second, pair_z[:, c], m)
                          for c in range(k)], 1)
        out[:m, m:] = cross
        out[m:, :m] = cross.T
        out[m:, m:] = zvz
        return out


def _penalty(params: np.ndarray, m: int, ridge: float, style_reg: float) -> float:
    return float(0.5 * ridge * params[:m] @ params[:m] + 0.5 * style_reg * params[m:] @ params[m:])


def _newton_weights(p, y, w):
    h = p * (1.0 - p)
    r = p - y
    if w is not None:
        h *= w
        r *= w
    return h, r


def _sandwich_weights(p, y, w):
    h = p * (1.0 - p)
    meat = (y - p) ** 2
    if w is not None:
        h *= w
        meat *= w
    return h, meat


def _newton(
    d: _Design, w: np.ndarray | None, params: np.ndarray, ridge: float, style_reg: float, tol: float, max_iter: int
) -> np.ndarray:
    m = d.m
    penalty = np.concatenate([np.full(m, ridge), np.full(d.k, style_reg)])
    x = d.logits(params[:m], params[m:])
    p = np.empty(d.n)
    f = d.data_nll(x, w, p) + _penalty(params, m, ridge, style_reg)
    for _ in range(max_iter):
        (h_pair, _, h_pair_z, h_zz), (r_pair, r_z) = d.sums(p, w, _newton_weights, second=1)
        g = d.gradient(r_pair, r_z) + penalty * params
        h = d.outer(h_pair, h_pair_z, h_zz)
        h[np.diag_indices_from(h)] += penalty
        step = np.linalg.solve(h, g)
        big = np.max(np.abs(step))
        if big > MAX_NEWTON_STEP:
            step *= MAX_NEWTON_STEP / big
        dx = d.logits(step[:m], step[m:])
        decrement = float(np.dot(g, step))
        # Below this the objective cannot tell the points apart: the sufficient-decrease test would then fail on
        # rounding alone and halve the step away, stopping short of the optimum by the step's size (3e-8 here, on
        # some processors). Newton is in its quadratic region there, so the full step is taken.
        rounding = 1e-12 * max(1.0, abs(f))
        t = 1.0
        while True:
            cand = params - t * step
            f_new = d.data_nll(x, w, p, dx, t) + _penalty(cand, m, ridge, style_reg)
            if decrement < rounding or f_new <= f - 1e-4 * t * decrement or t < 1e-8:
                break
            t *= 0.5
        params, f = cand, f_new
        x -= t * dx
        # The step test alone never passes at millions of battles: rounding in the O(N) sums keeps steps above
        # `tol`. Stop too once the Newton decrement says the objective cannot improve beyond its rounding.
        if np.max(np.abs(t * step)) < tol or decrement < rounding:
            break
    params = params.copy()
    params[:m] -= params[:m].mean()
    return params


def _sandwich(d: _Design, w: np.ndarray | None, params: np.ndarray, ridge: float, style_reg: float) -> np.ndarray:
    m = d.m
    p = expit(d.logits(params[:m], params[m:]))
    (h_pair, _, h_pair_z, h_zz), (s_pair, _, s_pair_z, s_zz) = d.sums(p, w, _sandwich_weights, second=2)
    bread = d.outer(h_pair, h_pair_z, h_zz)
    bread[np.diag_indices_from(bread)] += np.concatenate([np.full(m, ridge), np.full(d.k, style_reg)])
    meat = d.outer(s_pair, s_pair_z, s_zz)
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
    start: np.ndarray | None = None,
) -> StyleFit:
    """Fit Bradley-Terry with style covariates and its sandwich covariance.

    ``model_a``, ``model_b``: (N,) model indices; ``outcome``: (N,) 1 / 0 / 0.5; ``features``: (N, K)
    covariates, already standardised (see :func:`style_features`); ``weights``: (N,) frequency weights.
    ``start``: (M,) log-strengths to start Newton from (the plain fit's, say), with beta at 0; else all 0.
    The optimum is the same either way; a good start saves iterations.
    """
    d = _make_design(model_a, model_b, outcome, n_models, features)
    w = None if weights is None else _weights(weights, d.n)
    x0 = np.zeros(n_models + d.k)
    if start is not None:
        x0[:n_models] = np.asarray(start, dtype=np.float64)
    params = _newton(d, w, x0, ridge, style_reg, tol, max_iter)
    cov = _sandwich(d, w, params, ridge, style_reg)
    return StyleFit(theta=params[:n_models], beta=params[n_models:], covariance=cov)


def _weights(weights, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError("weights must have one entry per battle")
    return w


def _make_design(model_a, model_b, outcome, n_models: int, features) -> _Design:
    a = np.asarray(model_a)
    b = np.asarray(model_b)
    y = np.asarray(outcome, dtype=np.float64)
    z = np.asarray(features, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or y.shape != a.shape:
        raise ValueError("model_a, model_b and outcome must be (N,) arrays of the same length")
    if z.ndim != 2 or z.shape[0] != a.size:
        raise ValueError("features must have shape (N, K) with one row per battle")
    m = int(n_models)
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= m):
        raise ValueError("model indices must lie in 0 .. n_models - 1")
    return _Design(a, b, y, z, m)


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
    w = np.ones(d.n) if weights is None else _weights(weights, d.n)
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
