"""One generation job: claim a turn, stream its answer to the battle's group, save the result.

Runs on a Celery worker of the model's pool, or on a thread in the embedded server; the same code either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from inference import GenerationError, generate
from inference.dispatch import broker_lost_before
from inference.outages import UNREACHABLE, OutageLog
from models_hub.models import breaker_record

from .events import POSITION_LABEL, battle_publish, turn_publish
from .models import Battle, Turn, turn_style_fields

logger = logging.getLogger(__name__)

WORKER_LOST = "The model's worker stopped while answering. Press retry to ask again."
UNEXPECTED = "The model failed to answer. Press retry to ask again."


class TokenBatcher:
    """Collects streamed text and publishes it in small batches: at most every `interval` s or `size` chars.

    Each batch carries its `offset` in the answer, and `on_save(text so far)` runs before each batch is published,
    so a page that joins mid-answer reads every batch sent before it joined and fits the ones after by offset."""

    def __init__(
        self, public_id: str, side: str, turn: int, attempt: int, *, interval: float = 0.08, size: int = 200,
        on_save: Callable[[str], None] | None = None,
    ):
        self.public_id, self.side, self.turn, self.attempt = public_id, side, turn, attempt
        self.interval, self.size = interval, size
        self.buffer: list[str] = []
        self.buffered = 0
        self.last_flush = time.monotonic()
        self.frames = 0
        self.published: list[str] = []
        self.offset = 0
        self.on_save = on_save

    def add(self, text: str) -> None:
        if not text:
            return
        self.buffer.append(text)
        self.buffered += len(text)
        if self.buffered >= self.size or time.monotonic() - self.last_flush >= self.interval:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        text = "".join(self.buffer)
        self.buffer, self.buffered = [], 0
        self.last_flush = time.monotonic()
        self.frames += 1
        offset = self.offset
        self.offset += len(text)
        self.published.append(text)
        if self.on_save is not None:
            self.on_save("".join(self.published))
        battle_publish(self.public_id, {
            "type": "battle.token", "side": self.side, "turn": self.turn, "attempt": self.attempt, "text": text,
            "offset": offset,
        })


def _partial_key(turn_id: int, attempt: int) -> str:
    return f"arena:partial:{turn_id}:{attempt}"


partial_cache_outage = OutageLog("keeping partial answers")


def _save_partial(turn_id: int, attempt: int) -> Callable[[str], None]:
    """Keep the answer so far in the cache (Redis in production, the server's memory when embedded), for a page
    that reloads mid-answer: one small write per published batch, too many for the database."""
    timeout = settings.CELERY_TASK_TIME_LIMIT + 60

    def save(text: str) -> None:
        try:
            cache.set(_partial_key(turn_id, attempt), text, timeout)
        except UNREACHABLE as exc:
            partial_cache_outage.failed(exc)
        except Exception:
            logger.warning("could not keep the partial answer of turn %s", turn_id, exc_info=True)
        else:
            partial_cache_outage.ok()

    return save


def turn_partial_text(turn: Turn) -> str:
    """What a running turn has written so far ("" when the cache holds nothing for it)."""
    try:
        return cache.get(_partial_key(turn.pk, turn.attempt)) or ""
    except Exception:
        logger.warning("could not read the partial answer of turn %s", turn.pk, exc_info=True)
        return ""


def _history(turn: Turn) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    earlier_turns = Turn.objects.filter(side=turn.side, index__lt=turn.index).order_by("index") if turn.index else ()
    for earlier in earlier_turns:
        messages.append({"role": "user", "content": earlier.prompt})
        messages.append({"role": "assistant", "content": earlier.response})
    messages.append({"role": "user", "content": turn.prompt})
    return messages


def _still_current(turn_id: int, attempt: int, every: float = 1.0):
    """A should_stop callback: true once the turn was regenerated (a newer attempt) or the voter pressed stop,
    checked at most every `every` s."""
    state = {"checked": time.monotonic(), "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if not state["stop"] and now - state["checked"] >= every:
            state["checked"] = now
            state["stop"] = not Turn.objects.filter(pk=turn_id, attempt=attempt, stop_requested=False).exists()
        return state["stop"]

    return should_stop


def _finish(turn: Turn, attempt: int, *, stopped: bool = False, **fields) -> bool:
    fields.setdefault("finished_at", timezone.now())
    if fields["status"] == Turn.Status.DONE:
        fields.update(turn_style_fields(fields.get("response", "")))
    saved = Turn.objects.filter(pk=turn.pk, attempt=attempt, status=Turn.Status.RUNNING).update(**fields) == 1
    if saved:
        turn_publish(
            turn, attempt=attempt, status=fields["status"], text=fields.get("response", ""),
            error=fields.get("error", ""), cut=fields.get("cut_by_limit", False),
            stopped=stopped,
        )
        # Only the outcome of the current attempt counts: a retired attempt says nothing about the model now.
        # A success of a model whose breaker was clear when the turn began has nothing to reset.
        ok = fields["status"] == Turn.Status.DONE
        if not ok or turn.side.model.failures_in_row or turn.side.model.breaker_open_until is not None:
            breaker_record(turn.side.model_id, ok=ok)
    return saved


def turn_run(*, turn_id: int, attempt: int) -> None:
    claimed = Turn.objects.filter(pk=turn_id, attempt=attempt, status=Turn.Status.QUEUED).update(
        status=Turn.Status.RUNNING, started_at=timezone.now()
    )
    turn = Turn.objects.select_related("side__battle", "side__model").filter(pk=turn_id).first()
    if turn is None:
        return
    if not claimed:
        # Only one job is queued per attempt, so finding this attempt still running means the job that claimed
        # it died with its worker and the broker handed the job out again: end the turn instead of running twice.
        if turn.attempt == attempt and turn.status == Turn.Status.RUNNING:
            logger.warning("turn %s attempt %s was left running by a lost worker", turn_id, attempt)
            _finish(turn, attempt, status=Turn.Status.FAILED, error=WORKER_LOST)
        return
    side = POSITION_LABEL[turn.side.position]
    batcher = TokenBatcher(turn.side.battle.public_id, side, turn.index, attempt, on_save=_save_partial(turn_id, attempt))
    try:
        result = generate(
            turn.side.model, _history(turn), on_text=batcher.add, should_stop=_still_current(turn_id, attempt)
        )
    except GenerationError as exc:
        batcher.flush()
        _finish(turn, attempt, status=Turn.Status.FAILED, error=str(exc))
        return
    except BaseException as exc:
        # Includes Celery's soft time limit; the reason stays generic because it must not name the model.
        batcher.flush()
        logger.exception("generation for turn %s failed", turn_id)
        error = "The model took too long to answer. Press retry to ask again." if type(exc).__name__ == "SoftTimeLimitExceeded" else UNEXPECTED
        _finish(turn, attempt, status=Turn.Status.FAILED, error=error)
        if not isinstance(exc, Exception):
            raise
        return
    batcher.flush()
    _finish(
        turn, attempt, stopped=Turn.objects.filter(pk=turn_id, attempt=attempt, stop_requested=True).exists(),
        status=Turn.Status.DONE, response=result.text, prompt_tokens=result.prompt_tokens,
        output_tokens=result.output_tokens, time_to_first_token=result.time_to_first_token,
        tokens_per_second=result.tokens_per_second, cut_by_limit=result.finish_reason == "length",
    )


TIMED_OUT = "No answer came back in time. Press retry to ask again."
JOB_LOST = "The queued job was lost when the broker restarted. Press retry to ask again."


def _stale_cutoff(now) -> object:
    return now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def turn_is_stale(turn: Turn, now=None) -> bool:
    """What turn_reap_stale(battle=...) would fail: queued or running for longer than any job may take."""
    cutoff = _stale_cutoff(now or timezone.now())
    if turn.status == Turn.Status.QUEUED:
        return turn.queued_at < cutoff
    return turn.status == Turn.Status.RUNNING and turn.started_at is not None and turn.started_at < cutoff


def turn_reap_stale(*, battle: Battle | None = None) -> int:
    """Fail turns that no worker finished in time (a worker died, a pool went away), and, on the scheduled run,
    queued turns whose job a restarted broker lost; returns how many."""
    now = timezone.now()
    cutoff = _stale_cutoff(now)
    condition = Q(status=Turn.Status.QUEUED, queued_at__lt=cutoff) | Q(status=Turn.Status.RUNNING, started_at__lt=cutoff)
    lost_before = broker_lost_before() if battle is None else None
    if lost_before is not None:
        condition |= Q(status=Turn.Status.QUEUED, queued_at__lt=lost_before)
    stale = Turn.objects.filter(condition)
    if battle is not None:
        stale = stale.filter(side__battle=battle)
    reaped = 0
    for turn in stale.select_related("side__battle"):
        error = JOB_LOST if turn.status == Turn.Status.QUEUED and turn.queued_at >= cutoff else TIMED_OUT
        reaped_now = Turn.objects.filter(pk=turn.pk, attempt=turn.attempt, status=turn.status).update(
            status=Turn.Status.FAILED, error=error, finished_at=now
        )
        if reaped_now:
            turn_publish(turn, attempt=turn.attempt, status=Turn.Status.FAILED, error=error)
        reaped += reaped_now
    return reaped
