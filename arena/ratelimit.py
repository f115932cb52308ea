"""Sliding-window rate limits per session and per client address.

In any `ARENA_RATE_LIMIT_WINDOW` seconds at most `limit` actions pass, counted over the last window at every
moment (a fixed window would let twice the limit through across its edge). With Redis (production) both buckets
are checked and counted by one Lua script, so one round trip per action and the same count on every web process;
the embedded server keeps them in memory.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import deque

from django.conf import settings


class RateLimited(Exception):
    def __init__(self, action: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"Too many {action} from you just now. Please wait {retry_after} s and try again.")


def ip_hash(ip: str | None) -> str:
    return hashlib.sha256(f"{settings.ARENA_VOTER_SALT}:{ip or ''}".encode()).hexdigest()[:32]


# KEYS: one sorted set per bucket (members: one per counted action, scored by the time in ms).
# ARGV: limit, window in ms, a unique member. Counts the action in every bucket, or in none and answers how many
# ms until the fullest bucket has room again. Redis's own clock, so web hosts need not agree on the time.
_SLIDING_WINDOW = """
local now_s = redis.call('TIME')
local now = tonumber(now_s[1]) * 1000 + math.floor(tonumber(now_s[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, window)
end
return 0
"""

_script = None
_script_lock = threading.Lock()
_memory: dict[str, deque] = {}
_memory_lock = threading.Lock()


def _redis_script():
    global _script
    with _script_lock:
        if _script is None:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry

            # One client (and connection pool) per process, shared by every thread.
            client = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2,
                # a pooled connection that a Redis restart broke reconnects and the script runs again
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            )
            _script = client.register_script(_SLIDING_WINDOW)
        return _script


def _hit_memory(keys: list[str], limit: int, window: float) -> float:
    now = time.monotonic()
    with _memory_lock:
        buckets = [_memory.setdefault(key, deque()) for key in keys]
        wait = 0.0
        for bucket in buckets:
            while bucket and bucket[0] <= now - window:
                bucket.popleft()
            if len(bucket) >= limit:
                wait = max(wait, bucket[0] + window - now)
        if wait > 0:
            return wait
        for bucket in buckets:
            bucket.append(now)
        return 0.0


def rate_limit_hit(action: str, *, session_key: str, ip: str | None, limit: int) -> None:
    """Count one `action` for this session and address (None: the session only); raise RateLimited when either
    already had `limit` in the last window, counting nothing then (0 = no limit)."""
    if limit <= 0:
        return
    window = settings.ARENA_RATE_LIMIT_WINDOW
    keys = [f"arena:rl:{action}:s:{session_key}"]
    if ip is not None:
        keys.append(f"arena:rl:{action}:ip:{ip_hash(ip)}")
    if settings.REDIS_URL:
        wait = int(_redis_script()(keys=keys, args=[limit, window * 1000, secrets.token_hex(8)])) / 1000
    else:
        wait = _hit_memory(keys, limit, window)
    if wait > 0:
        raise RateLimited(action, max(1, math.ceil(wait)))
