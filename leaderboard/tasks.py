from __future__ import annotations

from celery import shared_task

from .snapshots import leaderboard_snapshots_create


@shared_task(name="leaderboard.snapshot", ignore_result=True)
def leaderboard_snapshot() -> int | None:
    snapshot = leaderboard_snapshots_create()
    return snapshot.pk if snapshot else None
