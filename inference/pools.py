"""Which pools have a live worker: Celery workers announce the queues they consume in Redis with a short TTL.

One key per pool (`arena:pool:<pool>`), refreshed by every worker of that pool: the key lives while any of them
does, and a battle start reads every pool it needs with one MGET instead of scanning the keyspace.

Pair sampling asks this so that a model whose pool has no worker is not drawn. In-process mode serves every
pool from the server itself, so every pool is live there.
"""

from __future__ import annotations

import logging
import socket
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from .outages import UNREACHABLE, OutageLog

logger = logging.getLogger(__name__)

KEY_PREFIX = "arena:pool:"
_stop = threading.Event()


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


_client = None


def _shared_redis():
    # One client (and its connection pool) per process for the read on every battle start; a connection that
    # a Redis restart broke reconnects and the read is tried again.
    global _client
    if _client is None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
    return _client


def pool_announce(pools: list[str], *, worker: str, ttl: int) -> None:
    client = _redis()
    try:
        pipe = client.pipeline()
        for pool in pools:
            pipe.set(f"{KEY_PREFIX}{pool}", worker, ex=ttl)
        pipe.execute()
    finally:
        client.close()


def live_pools(pools: set[str]) -> set[str]:
    """The subset of `pools` that has at least one live worker now."""
    if settings.ARENA_INPROCESS_WORKERS:
        return set(pools)
    import redis

    if not pools:
        return set()
    wanted = sorted(pools)
    try:
        seen = _shared_redis().mget([f"{KEY_PREFIX}{pool}" for pool in wanted])
    except redis.RedisError:
        logger.warning("cannot read pool heartbeats from Redis", exc_info=True)
        return set()
    return {pool for pool, worker in zip(wanted, seen) if worker is not None}


heartbeat_outage = OutageLog("the pool heartbeat")


@worker_ready.connect
def _start_heartbeat(sender=None, **kwargs) -> None:
    # The sender is the worker's consumer; the queues it consumes from are the pools it serves.
    app = getattr(sender, "app", None)
    queues = sorted(app.amqp.queues.consume_from) if app is not None else []
    worker = getattr(sender, "hostname", None) or socket.gethostname()
    interval = settings.ARENA_POOL_HEARTBEAT_SECONDS

    def beat() -> None:
        if settings.ARENA_ENGINE == "vllm":
            # The pool's models load and warm first: the pool is drawn into battles only once they can answer.
            from .vllm_engine import pool_warm

            try:
                pool_warm(queues)
            except Exception:
                logger.exception("warming the pool's models failed; they load on first use")
        while not _stop.is_set():
            try:
                pool_announce(queues, worker=worker, ttl=interval * 3)
            except UNREACHABLE as exc:
                heartbeat_outage.failed(exc)
            except Exception:
                logger.warning("pool heartbeat failed", exc_info=True)
            else:
                heartbeat_outage.ok()
            _stop.wait(interval)

    threading.Thread(target=beat, name="arena-pool-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **kwargs) -> None:
    _stop.set()
    if settings.ARENA_ENGINE == "vllm":
        from .vllm_engine import servers_close

        servers_close()
