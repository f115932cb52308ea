"""Pairwise sufficient statistics of a set of battles.

A battle is (index of model A, index of model B, outcome for A) with the outcome 1 (A won), 0 (B won) or
0.5 (tie or both bad, half a win to each side, as arena-rank's default outcome map does), and an optional
weight. Bradley-Terry only sees a battle through its pair and its outcome, so N battles collapse, once and in
O(N), into per-pair totals: for every unordered pair (i < j) the weight of battles i won, j won, and tied.
Every later step (fit, sandwich, bootstrap) then costs O(pairs), not O(N).

Weights are frequency weights: a battle of weight 2 counts exactly as two identical battles, in the fit,
in the sandwich and in the bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Above this many (pair, outcome) cells the dense bincount table would cost more memory than it saves time.
_DENSE_CELL_LIMIT = 1 << 24


class DisconnectedGraphError(ValueError):
    """The comparison graph has more than one connected component.

    Bradley-Terry scores of models in different components are not comparable (any shift of one component
    fits equally well), so the fit refuses instead of printing numbers that mean nothing.
    ``components`` lists the components (model names, or indices when no names were given), largest first.
    """

    def __init__(self, components: list[list[str]]):
        self.components = components
        shown = []
        for comp in components[:10]:
            names = ", ".join(str(c) for c in comp[:10])
            if len(comp) > 10:
                names += f", ... ({len(comp)} models)"
            shown.append("[" + names + "]")
        more = f" and {len(components) - 10} more" if len(components) > 10 else ""
        super().__init__(
            f"the comparison graph is disconnected: {len(components)} components: "
            + " | ".join(shown)
            + more
            + "; scores across components are not comparable"
        )


@dataclass(frozen=True)
class PairCounts:
    """Per-pair battle totals.

    All arrays have shape (P,), one entry per unordered pair that met at least once, ``first < second``.
    ``wins`` is the weight of battles ``first`` won, ``losses`` the weight ``second`` won, ``ties`` the
    weight of ties (including both-bad).
    """

    n_models: int
    first: np.ndarray
    second: np.ndarray
    wins: np.ndarray
    losses: np.ndarray
    ties: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """(P,) weight of all battles of each pair."""
        return self.wins + self.losses + self.ties

    @property
    def score(self) -> np.ndarray:
        """(P,) wins of ``first`` with ties as half a win."""
        return self.wins + 0.5 * self.ties

    def votes(self) -> np.ndarray:
        """(M,) weight of the battles each model took part in."""
        t = self.total
        return np.bincount(self.first, t, self.n_models) + np.bincount(self.second, t, self.n_models)

    def battle_matrix(self) -> np.ndarray:
        """(M, M) symmetric weight of battles per pair, zero on the diagonal."""
        out = np.zeros((self.n_models, self.n_models))
        out[self.first, self.second] = self.total
        out[self.second, self.first] = self.total
        return out

    def components(self) -> list[np.ndarray]:
        """Connected components of the comparison graph, largest first, each an array of model indices."""
        m = self.n_models
        keep = self.total > 0
        graph = coo_matrix((np.ones(int(keep.sum())), (self.first[keep], self.second[keep])), shape=(m, m))
        n, labels = connected_components(graph, directed=False)
        comps = [np.flatnonzero(labels == k) for k in range(n)]
        comps.sort(key=lambda c: (-len(c), c[0]))
        return comps

    def check_connected(self, names: list[str] | None = None) -> None:
        """Raise :class:`DisconnectedGraphError` unless every model is linked to every other by battles.

        A model without any battle is a component of its own.
        """
        comps = self.components()
        if len(comps) > 1:
            label = (lambda i: names[i]) if names is not None else (lambda i: int(i))
            raise DisconnectedGraphError([[label(i) for i in c] for c in comps])


def outcome_masks(outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split (N,) outcomes into boolean masks (a_won, tie); reject anything but 1, 0 and 0.5."""
    y = np.asarray(outcome)
    a_won = y == 1
    tie = y == 0.5
    bad = ~(a_won | tie | (y == 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"outcome[{i}] = {y[i]!r}: outcomes must be 1 (A won), 0 (B won) or 0.5 (tie)")
    return a_won, tie


def aggregate(
    model_a: np.ndarray,
    model_b: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    weights: np.ndarray | None = None,
) -> PairCounts:
    """Collapse N battles into per-pair totals in one O(N) pass.

    ``model_a``, ``model_b``: (N,) integer model indices in [0, n_models), different in every battle.
    ``outcome``: (N,) 1 if A won, 0 if B won, 0.5 for a tie or both-bad. ``weights``: (N,) non-negative
    frequency weights, or None for ones. Returns :class:`PairCounts` over the P pairs that met.
    """
    a = np.asarray(model_a)
    b = np.asarray(model_b)
    if a.ndim != 1 or a.shape != b.shape or np.shape(outcome) != a.shape:
        raise ValueError("model_a, model_b and outcome must be 1-d arrays of the same length")
    if a.size and not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
        raise ValueError("model indices must be integers")
    m = int(n_models)
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= m):
        raise ValueError(f"model indices must lie in [0, {m})")
    if (a == b).any():
        i = int(np.flatnonzero(a == b)[0])
        raise ValueError(f"battle {i} pits model {int(a[i])} against itself")
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != a.shape:
            raise ValueError("weights must have the same length as the battles")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and non-negative")
    else:
        w = None
    # kind = 2 - 2y: 0 when A won, 1 for a tie, 2 when B won; anything else (NaN included) is invalid.
    y = np.asarray(outcome)
    twice = 2 - 2 * y
    with np.errstate(invalid="ignore"):
        kind = twice.astype(np.int8)  # int8 against a float32 outcome compares in float32: no wide temporaries
    bad = (kind != twice) | (kind < 0) | (kind > 2)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"outcome[{i}] = {y[i]!r}: outcomes must be 1 (A won), 0 (B won) or 0.5 (tie)")

    n_cells = 3 * m * m
    if n_cells <= _DENSE_CELL_LIMIT:
        # One bincount over ordered (A, B, kind) cells, built in place, then fold A-vs-B and B-vs-A on the
        # small M x M table: fewer passes over the N battles than canonicalising each pair first.
        # 3 * m * m <= _DENSE_CELL_LIMIT fits int32, half the memory traffic of intp over the N battles.
        cell = a.astype(np.int32)
        cell *= m
        cell += b
        cell *= 3
        cell += kind
        ordered = np.bincount(cell, w, minlength=n_cells).reshape(m, m, 3).astype(np.float64, copy=False)
        del cell
        lo, hi = np.triu_indices(m, 1)
        fwd, back = ordered[lo, hi], ordered[hi, lo]
        table = np.column_stack([fwd[:, 0] + back[:, 2], fwd[:, 2] + back[:, 0], fwd[:, 1] + back[:, 1]])
        # A pair whose battles all weigh zero carries no information, so dropping it is harmless.
        keep = table.any(axis=1)
        present = lo[keep] * m + hi[keep]
        table = table[keep]
    else:
        a64 = a.astype(np.int64)
        b64 = b.astype(np.int64)
        flipped = a64 > b64
        code = np.where(flipped, b64 * m + a64, a64 * m + b64)
        # Seen from the lower index, a flipped battle's A-won and B-won swap.
        kind = np.where(flipped, 2 - kind, kind)
        kind = np.where(kind == 1, 2, np.where(kind == 2, 1, 0))  # columns: lower won, higher won, tie
        uniq, inverse = np.unique(code, return_inverse=True)
        table = np.bincount(inverse * 3 + kind, w, minlength=3 * uniq.size).reshape(uniq.size, 3)
        present = uniq
    table = table.astype(np.float64, copy=False)
    return PairCounts(
        n_models=m,
        first=(present // m).astype(np.int64),
        second=(present % m).astype(np.int64),
        wins=np.ascontiguousarray(table[:, 0]),
        losses=np.ascontiguousarray(table[:, 1]),
        ties=np.ascontiguousarray(table[:, 2]),
    )
