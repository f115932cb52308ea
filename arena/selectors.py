"""Reads: what pages and health checks ask of the database and Redis."""

from __future__ import annotations

from django.conf import settings
from django.db import connection


def health_check() -> dict[str, str]:
    """{part: "ok" | "error: <reason>"} for the database and, where configured, Redis."""
    parts: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        parts["database"] = "ok"
    except Exception as exc:  # any driver error means the part is down; the reason goes in the answer
        parts["database"] = f"error: {type(exc).__name__}: {exc}".strip()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
            parts["redis"] = "ok"
        except redis.RedisError as exc:
            parts["redis"] = f"error: {type(exc).__name__}: {exc}"
        finally:
            client.close()
    return parts
