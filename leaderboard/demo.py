"""The demo board: the repository's sample battles (``sample_battles/``, LLMFAO, CC BY 4.0) fitted into a
leaderboard of their own, so that a new arena shows what a full board looks like at ``/leaderboard/?board=demo``.

The battles are read and fitted in memory and stored only as a snapshot of the ``demo`` board: no battle, vote or
model entry is written, so they never mix with the arena's votes, its registry or its exports. The snapshot names
its models itself (``payload["demo_models"]``: local id -> name), which ``leaderboard.snapshots.demo_entries`` turns into unsaved
model entries for the page.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from .imports import battles_read
from .models import LeaderboardSnapshot
from .snapshots import OUTCOME, PAYLOAD_VERSION, category_fit, category_label

SAMPLE_BATTLES = Path(__file__).resolve().parent / "sample_battles" / "battles.csv"
DEMO_SOURCE = "LLMFAO by Dmitry Ustalov, crowd comparisons, CC BY 4.0"


def demo_board_load(path: Path = SAMPLE_BATTLES) -> tuple[LeaderboardSnapshot, bool]:
    """Fit the battles of ``path`` into a new demo snapshot; (the snapshot, whether it is new). An unchanged file
    stores nothing new. A malformed file raises leaderboard.imports.BattleImportError and stores nothing."""
    started = time.monotonic()
    digest = hashlib.sha256(f"demo;v{PAYLOAD_VERSION}\n".encode() + Path(path).read_bytes()).hexdigest()
    latest = LeaderboardSnapshot.objects.filter(board=LeaderboardSnapshot.Board.DEMO).order_by("-id").first()
    if latest is not None and latest.vote_hash == digest:
        return latest, False
    battles = battles_read(path)
    names = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    ids = {name: i + 1 for i, name in enumerate(names)}  # local ids: no model entry of the arena's
    left = np.array([ids[b.model_a] for b in battles], dtype=np.int64)
    right = np.array([ids[b.model_b] for b in battles], dtype=np.int64)
    outcome = np.array([OUTCOME[b.choice] for b in battles], dtype=np.float64)
    overall = category_fit(left, right, outcome, None, min_votes=1,
                           preliminary_votes=settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES, label=category_label("overall"))
    payload: dict[str, Any] = {
        "version": PAYLOAD_VERSION, "categories": {"overall": overall}, "votes_over_time": [],
        "min_category_votes": settings.ARENA_LEADERBOARD_MIN_CATEGORY_VOTES,
        "preliminary_votes": settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES,
        "demo_models": {str(i): name for name, i in ids.items()}, "demo_source": DEMO_SOURCE,
    }
    snapshot = LeaderboardSnapshot.objects.create(
        board=LeaderboardSnapshot.Board.DEMO, votes_used=len(battles), vote_hash=digest, payload=payload,
        seconds=time.monotonic() - started,
    )
    return snapshot, True

