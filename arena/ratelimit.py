"""Fixed-window rate limits per session and per IP, counted in the cache (Redis in production)."""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache


class RateLimited(Exception):
    def __init__(self, action: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"Too many {action} from you just now. Please wait {retry_after} s and try again.")


def ip_hash(ip: str | None) -> str:
    return hashlib.sha256(f"{settings.ARENA_VOTER_SALT}:{ip or ''}".encode()).hexdigest()[:32]


def rate_limit_hit(action: str, *, session_key: str, ip: str, limit: int) -> None:
    """Count one `action` for this session and IP; raise RateLimited past `limit` per window (0 = no limit)."""
    if limit <= 0:
        return
    window = settings.ARENA_RATE_LIMIT_WINDOW
    bucket = int(time.time() // window)
    retry_after = window - int(time.time() % window)
    for who in (f"s:{session_key}", f"ip:{ip}"):
        key = f"arena:rl:{action}:{who}:{bucket}"
        if cache.add(key, 1, timeout=window + 5):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=window + 5)
                count = 1
        if count > limit:
            raise RateLimited(action, retry_after)
