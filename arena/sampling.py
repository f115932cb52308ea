"""Which two models meet in an anonymous battle."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime

from models_hub.models import ModelEntry


class NoPairAvailable(Exception):
    pass


def breaker_closed(candidates: Sequence[ModelEntry], *, now: datetime) -> list[ModelEntry]:
    """The candidates whose circuit breaker lets them be drawn at `now`: a model whose recent turns keep failing
    sits out its cool-down (see models_hub.models.breaker_record), then is drawn again to show it answers."""
    return [e for e in candidates if not e.breaker_is_open(now)]


def _weighted_choice(rng: random.Random, entries: Sequence[ModelEntry], weights: Sequence[float]) -> ModelEntry:
    total = sum(weights)
    if total <= 0:
        raise NoPairAvailable("no model with a positive sampling weight")
    return rng.choices(list(entries), weights=list(weights), k=1)[0]


def pair_sample(
    candidates: Sequence[ModelEntry],
    *,
    rng: random.Random,
    inhouse_share: float = 0.0,
    rivals: dict[str, float] | None = None,
    previews_meet: bool = False,
) -> tuple[ModelEntry, ModelEntry]:
    """Draw two distinct models and return them as (left, right) in random order.

    With probability `inhouse_share` one of them is an in-house model and its rival is drawn by sampling weight
    times the factor `rivals` gives it; otherwise both are drawn by sampling weight alone. Unless `previews_meet`,
    two preview models are never drawn together. Raises NoPairAvailable when no valid pair exists.
    """
    pool = [e for e in candidates if e.sampling_weight > 0]
    if len(pool) < 2:
        raise NoPairAvailable("fewer than two models are available")
    rivals = rivals or {}
    inhouse = [e for e in pool if e.is_inhouse]

    def partners_of(first: ModelEntry) -> list[ModelEntry]:
        return [
            e for e in pool
            if e.pk != first.pk and (previews_meet or not (first.is_preview and e.is_preview))
        ]

    if inhouse and rng.random() < inhouse_share:
        first = _weighted_choice(rng, inhouse, [e.sampling_weight for e in inhouse])
        partners = partners_of(first)
        weights = [e.sampling_weight * rivals.get(e.slug, 1.0) for e in partners]
    else:
        firsts = [e for e in pool if partners_of(e)]
        if not firsts:
            raise NoPairAvailable("no two models may meet")
        first = _weighted_choice(rng, firsts, [e.sampling_weight for e in firsts])
        partners = partners_of(first)
        weights = [e.sampling_weight for e in partners]
    if not partners:
        raise NoPairAvailable("no rival is available")
    second = _weighted_choice(rng, partners, weights)
    pair = [first, second]
    rng.shuffle(pair)
    return pair[0], pair[1]
