"""The one place that knows where generation jobs run: Celery workers per pool, or threads in this process.

Callers hand over a Celery task and its arguments; with `ARENA_INPROCESS_WORKERS` (the embedded default) the
task's body runs on a small thread pool inside the server, otherwise it is queued to the model's pool.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _inprocess_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.ARENA_INPROCESS_THREADS, thread_name_prefix="arena-generation"
            )
        return _executor


def _run_inprocess(task: Any, args: tuple) -> None:
    close_old_connections()
    try:
        task.run(*args)
    except Exception:
        logger.exception("in-process job %s%r failed", task.name, args)
    finally:
        close_old_connections()


def dispatch(task: Any, *, args: tuple, pool: str) -> None:
    """Run `task(*args)` on a worker of `pool`. Call it after the rows the task reads are committed."""
    if settings.ARENA_INPROCESS_WORKERS:
        _inprocess_executor().submit(_run_inprocess, task, args)
    else:
        task.apply_async(args=args, queue=pool)


def inprocess_idle(timeout: float = 60.0) -> bool:
    """Wait until every in-process job queued so far has finished (used by tests and the shutdown path)."""
    if _executor is None:
        return True
    done = threading.Event()
    # Jobs run in submission order per free thread; a marker per thread finishes after all earlier jobs.
    barrier = threading.Barrier(settings.ARENA_INPROCESS_THREADS, action=done.set)
    for _ in range(settings.ARENA_INPROCESS_THREADS):
        _executor.submit(barrier.wait, timeout)
    return done.wait(timeout)


# A key the broker's Redis keeps for as long as it keeps its data (it has no time-to-live). Finding it gone means
# Redis started afresh (a restart without persistence, or a flush), and with it every job queued before went.
BROKER_MARK_KEY = "arena:broker:mark"
# Clocks of the web hosts (which stamp queued turns) and of this host may differ a little.
CLOCK_SLACK = timedelta(seconds=1)


def broker_lost_before() -> datetime | None:
    """The time before which jobs queued to the broker were lost, when the broker lost them since the last call
    (else None). Called by the reaper every few seconds; the first call after a loss answers, later ones do not.

    A restarted Redis without persistence has forgotten its queues: a job sent before it started is gone, one
    sent after is safe. With persistence (appendonly) the mark survives the restart and nothing is reported.
    """
    if settings.ARENA_INPROCESS_WORKERS or not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        if not client.set(BROKER_MARK_KEY, timezone.now().isoformat(), nx=True):
            return None
        uptime = int(client.info("server").get("uptime_in_seconds", 0))
    finally:
        client.close()
    lost_before = timezone.now() - timedelta(seconds=uptime) + CLOCK_SLACK
    logger.warning("the broker holds no jobs queued before %s (Redis started afresh)", lost_before.isoformat())
    return lost_before
