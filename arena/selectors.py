"""Reads: what pages, consumers and health checks ask of the database and Redis."""

from __future__ import annotations

from django.conf import settings
from django.db import connection

from models_hub.models import ModelEntry

from .events import POSITION_LABEL
from .models import Battle, Turn, Vote
from .rendering import render_markdown


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


def models_choosable() -> list[dict[str, str]]:
    """Models a voter may pick by name (named side-by-side, direct chat): active and public only."""
    return [
        {"slug": e.slug, "name": e.display_name, "organization": e.organization}
        for e in ModelEntry.objects.filter(is_active=True, visibility="public", modality="text").order_by("display_name")
    ]


def battle_state(battle: Battle) -> dict:
    """What the battle's owner may see now: turns per side, and model names only once they may be shown."""
    vote = Vote.objects.filter(battle=battle).first()
    sides = {}
    names = {}
    for side in battle.sides.select_related("model").order_by("position"):
        label = POSITION_LABEL[side.position]
        sides[label] = [
            {
                "turn": t.index, "attempt": t.attempt, "prompt": t.prompt, "status": t.status, "text": t.response,
                "html": render_markdown(t.response) if t.status == Turn.Status.DONE else "", "error": t.error,
            }
            for t in side.turns.order_by("index")
        ]
        names[label] = side.model.public_name
    reveal = vote is not None or battle.mode != Battle.Mode.ANONYMOUS
    return {
        "battle": battle.public_id,
        "mode": battle.mode,
        "sides": sides,
        "voted": vote.choice if vote else None,
        "models": names if reveal else None,
    }
