"""One synthesis job: claim a side's turn, speak its text, store the clip and finish the turn, all or nothing.

Runs on a Celery worker of the voice's pool, or on a thread in the embedded server (inference.dispatch), like the
text arena's turn job. The page polls the battle's state; nothing is streamed.
"""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from arena.generation import UNEXPECTED, WORKER_LOST
from arena.models import Turn
from inference import GenerationError
from inference.speech import synthesize

from .languages import battle_language
from .models import SpeechClip, clip_name, clip_storage

logger = logging.getLogger(__name__)

TOO_SLOW = "The voice took too long to speak. Start a new round."


def _fail(turn_id: int, attempt: int, error: str) -> bool:
    return Turn.objects.filter(pk=turn_id, attempt=attempt, status=Turn.Status.RUNNING).update(
        status=Turn.Status.FAILED, error=error, finished_at=timezone.now()
    ) == 1


def clip_synthesize(*, turn_id: int, attempt: int) -> None:
    """Speak turn `turn_id`'s text for attempt `attempt`; a retried or late job never runs it twice."""
    claimed = Turn.objects.filter(pk=turn_id, attempt=attempt, status=Turn.Status.QUEUED).update(
        status=Turn.Status.RUNNING, started_at=timezone.now()
    )
    turn = Turn.objects.select_related("side__model", "side__battle").filter(pk=turn_id).first()
    if turn is None:
        return
    if not claimed:
        if turn.attempt == attempt and turn.status == Turn.Status.RUNNING:
            logger.warning("speech turn %s attempt %s was left running by a lost worker", turn_id, attempt)
            _fail(turn_id, attempt, WORKER_LOST)
        return
    try:
        result = synthesize(turn.side.model, turn.prompt, language=battle_language(turn.side.battle))
    except GenerationError as exc:
        _fail(turn_id, attempt, str(exc))
        return
    except BaseException as exc:
        # Includes Celery's soft time limit; the reason stays generic because it must not name the model.
        logger.exception("synthesis for turn %s failed", turn_id)
        _fail(turn_id, attempt, TOO_SLOW if type(exc).__name__ == "SoftTimeLimitExceeded" else UNEXPECTED)
        if not isinstance(exc, Exception):
            raise
        return
    storage = clip_storage()
    name = storage.save(clip_name(), ContentFile(result.audio))
    try:
        with transaction.atomic():
            finished = Turn.objects.filter(pk=turn_id, attempt=attempt, status=Turn.Status.RUNNING).update(
                status=Turn.Status.DONE, finished_at=timezone.now()
            )
            if finished:
                SpeechClip.objects.create(
                    turn_id=turn_id, audio=name, byte_size=len(result.audio), sample_rate=result.sample_rate,
                    audio_seconds=result.audio_seconds, generation_seconds=result.generation_seconds,
                    first_audio_seconds=result.first_audio_seconds, device=result.device,
                )
    except Exception:
        # The turn stays running inside the rolled-back transaction: end it failed, and keep no orphan file.
        logger.exception("could not store the clip of turn %s", turn_id)
        storage.delete(name)
        _fail(turn_id, attempt, UNEXPECTED)
        return
    if not finished:  # the turn was reaped or superseded meanwhile: its clip is not wanted
        storage.delete(name)
