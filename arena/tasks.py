from __future__ import annotations

from celery import shared_task

from inference import pools  # noqa: F401  (workers announce the pools they serve)

from .generation import turn_run, turn_reap_stale


@shared_task(name="arena.generate_turn", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def generate_turn(turn_id: int, attempt: int) -> None:
    # The task keeps its name (arena.generate_turn) so jobs already queued still find it; the work is turn_run.
    turn_run(turn_id=turn_id, attempt=attempt)


@shared_task(name="arena.reap_stale_turns", ignore_result=True)
def reap_stale_turns() -> int:
    return turn_reap_stale()

