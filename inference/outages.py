"""Logging a Redis that this process cannot reach: once when it goes, once when it is back.

A worker writes to Redis for every batch of tokens it generates (the frame to the voter's socket, the answer so
far) and for every heartbeat, so an outage of a few seconds used to put one traceback per write in its log. Each
kind of write keeps an ``OutageLog``; an error that is not about reaching Redis is a bug and keeps its traceback
each time.
"""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

UNREACHABLE = (RedisError, OSError)  # OSError takes in ConnectionError and TimeoutError


class OutageLog:
    """Whether ``what`` (one kind of write to Redis) is failing in this process. Thread-safe: the generation
    threads of one worker share an instance, so an outage is one warning per process, not one per job."""

    def __init__(self, what: str):
        self.what = what
        self._lock = threading.Lock()
        self._since: float | None = None  # time.monotonic() of the first failure of the current outage
        self._dropped = 0

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self._since is None
            if first:
                self._since, self._dropped = time.monotonic(), 0
            self._dropped += 1
        if first:
            logger.warning("Redis unreachable for %s (%s: %s); not logged again until it works again",
                           self.what, type(exc).__name__, exc)

    def ok(self) -> None:
        if self._since is None:  # the common case, read without the lock
            return
        with self._lock:
            if self._since is None:
                return
            lasted, dropped, self._since = time.monotonic() - self._since, self._dropped, None
        logger.info("Redis reachable again for %s after %.1f s; failed writes meanwhile: %d",
                    self.what, lasted, dropped)
