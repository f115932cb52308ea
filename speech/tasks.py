from __future__ import annotations

from celery import shared_task

from inference import pools  # noqa: F401  (workers announce the pools they serve)

from .synthesis import clip_synthesize


@shared_task(name="speech.synthesize_clip", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def synthesize_clip(turn_id: int, attempt: int) -> None:
    clip_synthesize(turn_id=turn_id, attempt=attempt)


@shared_task(name="speech.leaderboard_snapshot", ignore_result=True)
def speech_leaderboard_snapshot() -> None:
    from .leaderboard import speech_snapshot_create

    speech_snapshot_create()
