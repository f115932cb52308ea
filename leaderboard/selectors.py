"""Reads the leaderboard pages make beside the snapshot: fresh votes on a version, and its lineage."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Max, Q

from arena.models import VoteFact
from models_hub.models import ModelEntry


def fresh_votes_count(entry: ModelEntry, *, simulated: bool) -> int:
    """Counted votes on ``entry`` since the last of its family (itself and the other versions of its parent)
    entered the arena: what ``ratings.provisional`` reads."""
    family = ModelEntry.objects.filter(pk=entry.pk)
    if entry.parent_id is not None:
        family = ModelEntry.objects.filter(parent_id=entry.parent_id)
    entered = family.aggregate(last=Max("created_at"))["last"] or entry.created_at
    return VoteFact.objects.filter(
        Q(left_model_id=entry.pk) | Q(right_model_id=entry.pk), counted=True, simulated=simulated, voted_at__gte=entered
    ).count()


def lineage_roots(entries: Iterable[ModelEntry]) -> dict[int, int]:
    """{entry pk: pk of the first model of its lineage} (following ``parent`` up; a built model is its own root).
    One query per generation above the deepest entry."""
    parent = {e.pk: e.parent_id for e in entries}
    missing = {p for p in parent.values() if p is not None and p not in parent}
    while missing:
        found = dict(ModelEntry.objects.filter(pk__in=missing).values_list("pk", "parent_id"))
        parent.update(found)
        missing = {p for p in found.values() if p is not None and p not in parent}

    def root(pk: int) -> int:
        seen = set()
        while parent.get(pk) is not None and pk not in seen:
            seen.add(pk)
            pk = parent[pk]
        return pk

    return {e.pk: root(e.pk) for e in entries}
