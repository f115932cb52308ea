"""Active sampling in real battles: a stored public snapshot leaves its fit for the draw, and battle_create spends
battles on the open pair when ARENA_ACTIVE_SAMPLING > 0; with it off the draw is the configured one."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from django.core.cache import cache

import arena.services
from arena.sampling import DRAW_FIT_CACHE_KEY, configured_pair_probabilities, pair_sample
from arena.services import battle_create
from leaderboard.snapshots import leaderboard_snapshot_create
from models_hub.models import ModelEntry
from tests.leaderboard.test_leaderboard import import_csv, model


@pytest.fixture
def arena_with_snapshot(db, tmp_path, settings, django_capture_on_commit_callbacks):
    settings.ARENA_INPROCESS_WORKERS = True
    settings.ARENA_INHOUSE_SHARE = 0.0
    cache.delete(DRAW_FIT_CACHE_KEY)
    base = model("base", display_name="Base")
    ours = model("ours", display_name="Ours", is_inhouse=True, parent=base, version=2)
    for slug in ("r1", "r2", "r3"):
        model(slug, display_name=slug.upper())
    # Ours against its parent: even and open. Every other pair far apart and settled.
    rows = [("Ours", "Base", "model_a")] * 20 + [("Ours", "Base", "model_b")] * 20
    for a, b in (("Base", "R1"), ("R1", "R2"), ("R2", "R3"), ("Ours", "R1")):
        rows += [(a, b, "model_a")] * 300 + [(a, b, "model_b")] * 10
    import_csv(tmp_path, rows)
    with django_capture_on_commit_callbacks(execute=True):
        snapshot = leaderboard_snapshot_create()
    assert cache.get(DRAW_FIT_CACHE_KEY)["snapshot_id"] == snapshot.pk
    yield ours, base
    cache.delete(DRAW_FIT_CACHE_KEY)


def battles(n: int, seed: int, monkeypatch) -> list[frozenset[int]]:
    monkeypatch.setattr(arena.services, "_rng", random.Random(seed))
    pairs = []
    for i in range(n):
        battle = battle_create(session_key=f"s{i}", ip="192.0.2.7", mode="anonymous", prompt="hi", admitted=True)
        pairs.append(frozenset(battle.sides.values_list("model_id", flat=True)))
    return pairs


def test_battles_favour_the_open_pair_when_active_sampling_is_on(arena_with_snapshot, settings, monkeypatch):
    ours, base = arena_with_snapshot
    settings.ARENA_ACTIVE_SAMPLING = 0.9
    n = 300
    seen = Counter(battles(n, 4, monkeypatch))
    entries = list(ModelEntry.objects.order_by("pk"))
    configured = configured_pair_probabilities(entries)[entries.index(ours), entries.index(base)]
    assert seen[frozenset((ours.pk, base.pk))] / n > 2.5 * configured


def test_battles_draw_as_configured_when_active_sampling_is_off(arena_with_snapshot, settings, monkeypatch):
    settings.ARENA_ACTIVE_SAMPLING = 0.0
    drawn = battles(40, 9, monkeypatch)
    rng = random.Random(9)
    entries = list(ModelEntry.objects.all())
    expected = [frozenset(e.pk for e in pair_sample(entries, rng=rng)) for _ in range(40)]
    assert drawn == expected


def test_a_retired_or_excluded_model_is_not_drawn(arena_with_snapshot, settings, monkeypatch):
    from django.utils import timezone

    ours, base = arena_with_snapshot
    ModelEntry.objects.filter(pk=ours.pk).update(retired_at=timezone.now(), is_active=False)
    ModelEntry.objects.filter(pk=base.pk).update(anonymous_excluded=True)
    drawn = battles(30, 3, monkeypatch)
    assert not any({ours.pk, base.pk} & pair for pair in drawn)


def test_an_unchanged_board_fills_an_emptied_cache_again(arena_with_snapshot):
    before = cache.get(DRAW_FIT_CACHE_KEY)
    cache.delete(DRAW_FIT_CACHE_KEY)  # as after a Redis restart
    assert leaderboard_snapshot_create() is None, "the votes have not changed: no new snapshot"
    again = cache.get(DRAW_FIT_CACHE_KEY)
    assert again is not None and again["snapshot_id"] == before["snapshot_id"] and again["votes"] == before["votes"]
