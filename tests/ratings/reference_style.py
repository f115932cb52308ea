"""The style-controlled fit as first written: every Newton step over all battles at once, in float64.

Kept as the definition that ``ratings.style``'s chunked fit is checked against
(tests/ratings/test_style_reference.py). Not used by the product.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ratings.bradley_terry import DEFAULT_RIDGE, MAX_NEWTON_STEP, covariance_centre
from ratings.style import DEFAULT_STYLE_REG, StyleFit


def style_features(style: np.ndarray) -> np.ndarray:
    s = np.asarray(style, dtype=np.float64)
    a, b = s[:, 0, :], s[:, 1, :]
    z = (a - b) / (a + b + 1.0)
    z = z - z.mean(axis=0)
    sd = z.std(axis=0)
    return z / np.where(sd > 0, sd, 1.0)


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
