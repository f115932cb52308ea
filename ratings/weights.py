"""Vote weights that correct for how the votes were collected: pair balancing and repeated prompts.

Inverse pair frequency (:func:`inverse_pair_frequency`): each battle of the unordered pair {i, j} gets weight
N / (P n_ij), N the number of battles, P the number of pairs that met, n_ij the battles of that pair. Every pair
then carries the same total weight N / P and the weights still sum to N, so the fit is the one a uniform draw over
pairs would have given (arena-rank's reweighting, normalised to total N). The weights are then frequency weights like
any others: the sandwich reads them as counts, so the intervals are those of N battles spread evenly over the pairs,
not of the real, uneven, data.

Repeated prompts (:func:`prompt_repeat_weights`): a prompt seen c times, c above ``cap``, gives each of its votes
weight cap / c, so together they count as ``cap`` votes; prompts seen at most ``cap`` times keep weight 1. This is
the dedup rule of FastChat and LMArena made smooth: instead of keeping ``cap`` of the repeats at random, every
repeat keeps the same fraction.
"""

from __future__ import annotations

import numpy as np


def inverse_pair_frequency(model_a: np.ndarray, model_b: np.ndarray, n_models: int) -> np.ndarray:
    """(N,) weight of each battle: N / (P n_pair), see the module notes. ``model_a``, ``model_b``: (N,) indices."""
    a = np.asarray(model_a, dtype=np.int64)
    b = np.asarray(model_b, dtype=np.int64)
    if a.size == 0:
        return np.zeros(0)
    key = np.minimum(a, b) * n_models + np.maximum(a, b)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return a.size / (counts.size * counts[inverse].astype(np.float64))


def prompt_repeat_weights(prompts: np.ndarray, cap: float) -> np.ndarray:
    """(N,) weight of each vote: min(1, cap / c) with c the number of votes on the same prompt. ``prompts``: (N,)
    any hashable codes (prompt hashes); ``cap``: votes a prompt may count for, > 0."""
    if not cap > 0:
        raise ValueError("cap must be positive")
    p = np.asarray(prompts)
    if p.size == 0:
        return np.zeros(0)
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    return np.minimum(1.0, cap / counts[inverse].astype(np.float64))
