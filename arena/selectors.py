"""Reads: what pages, consumers and health checks ask of the database and Redis."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, FilteredRelation, FloatField, Func, OuterRef, Q, QuerySet

from models_hub.models import ModelEntry

from .events import POSITION_LABEL
from .generation import turn_is_stale, turn_partial_text, turn_reap_stale
from .models import Battle, Side, Turn, Vote
from .rendering import render_markdown
from .rows import battle_turns
from .sampling import DRAW_FIT_CACHE_KEY, DrawFit

logger = logging.getLogger(__name__)

# What a voter reads when a side fails, whatever the cause. The stored reason (for operators, in the admin) differs
# by provider and fault (missing files for a local checkpoint, an HTTP status for an endpoint), and so would say
# something about the model before the vote.
SIDE_FAILED = "This side could not answer. Press retry to ask again."


class Epoch(Func):
    """Seconds since 1970 of a datetime, computed by the database (no datetime objects per row)."""

    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float8", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)",
                           **extra)


def with_side_models(votes: QuerySet[Vote]) -> QuerySet[Vote]:
    """Votes with their battle's two sides joined as ``left_side`` and ``right_side`` (one row per vote): filter
    and read ``left_side__model_id`` / ``right_side__model_id``."""
    return votes.alias(
        left_side=FilteredRelation("battle__sides", condition=Q(battle__sides__position="left")),
        right_side=FilteredRelation("battle__sides", condition=Q(battle__sides__position="right")),
    )


def row_chunks(queryset: Any, size: int = 50_000) -> Iterator[list[tuple]]:
    """The rows of a values_list queryset in chunks, from a server-side cursor, with no model instances or
    per-row ORM conversion: a snapshot reads millions of rows.

    On PostgreSQL the cursor lives in a transaction (outside one Django declares it WITH HOLD, which runs the
    whole query at DECLARE) and is planned for reading every row: by default a cursor is planned to return its
    first tenth fast, which picks nested loops that take minutes over a million votes."""
    sql, params = queryset.query.sql_with_params()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(size):
                yield rows


def health_check() -> dict[str, str]:
    """{part: "ok" | "unavailable"} for the database and, where configured, Redis.

    The answer is public, so it names the part and nothing else: the driver's error (host, port, user) goes to
    the log for the operator.
    """
    parts: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        parts["database"] = "ok"
    except Exception:  # any driver error means the part is down
        logger.warning("health check: the database is unavailable", exc_info=True)
        parts["database"] = "unavailable"
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
            parts["redis"] = "ok"
        except redis.RedisError:
            logger.warning("health check: Redis is unavailable", exc_info=True)
            parts["redis"] = "unavailable"
        finally:
            client.close()
    return parts


def draw_fit_latest() -> DrawFit | None:
    """What the latest public snapshot left for the draw (see leaderboard.snapshots), or None: none stored yet, or
    the cache is unreachable (the configured draw goes on without it)."""
    try:
        return cache.get(DRAW_FIT_CACHE_KEY)
    except Exception:
        logger.warning("could not read the draw's fit from the cache", exc_info=True)
        return None


def models_choosable() -> list[dict[str, str]]:
    """Models a voter may pick by name (named side-by-side, direct chat): active and public only."""
    return [
        {"slug": e.slug, "name": e.display_name, "organization": e.organization}
        for e in ModelEntry.objects.filter(is_active=True, visibility="public", modality="text").order_by("display_name")
    ]


def battle_state(battle: Battle) -> dict:
    """What the battle's owner may see now: turns per side, and model names only once they may be shown.

    Turns left queued or running past any job's time limit are failed first (turn_reap_stale), so what the page
    shows is final. One query: every turn with its side and model, and the vote (arena.rows)."""
    turns, voted = battle_turns(battle)
    if any(turn_is_stale(t) for t in turns) and turn_reap_stale(battle=battle):
        turns, voted = battle_turns(battle)
    sides: dict[str, list[dict]] = {}
    names = {}
    for t in turns:
        label = POSITION_LABEL[t.side.position]
        sides.setdefault(label, []).append({
            "turn": t.index, "attempt": t.attempt, "prompt": t.prompt, "status": t.status,
            "text": turn_partial_text(t) if t.status == Turn.Status.RUNNING else t.response,
            "html": render_markdown(t.response) if t.status == Turn.Status.DONE else "",
            "error": SIDE_FAILED if t.error else "",
            "cut": t.cut_by_limit, "stopped": t.stop_requested and t.status == Turn.Status.DONE,
        })
        names[label] = t.side.model.public_name
    reveal = voted is not None or battle.mode != Battle.Mode.ANONYMOUS
    return {
        "battle": battle.public_id,
        "mode": battle.mode,
        "sides": sides,
        "voted": voted,
        "models": names if reveal else None,
    }


def battle_shared(public_id: str) -> dict | None:
    """A voted battle as its share page shows it: read-only, the names revealed since it was voted on. None for a
    battle that does not exist or has no vote yet, so a link can reveal nothing before the vote."""
    battle = Battle.objects.filter(public_id=public_id, mode__in=[Battle.Mode.ANONYMOUS, Battle.Mode.NAMED]).first()
    if battle is None or not Vote.objects.filter(battle=battle).exists():
        return None
    state = battle_state(battle)
    state["winner"] = POSITION_LABEL.get(state["voted"])
    state["verdict"] = Vote.Choice(state["voted"]).label
    state["rounds"] = [
        {"prompt": a["prompt"], "answers": [("A", a), ("B", b)]}
        for a, b in zip(state["sides"]["A"], state["sides"]["B"])
    ]
    return state


def battle_failed_side() -> Exists:
    """True for a battle one of whose turns failed; a correlated NOT EXISTS is planned as an anti-join, where
    `id NOT IN (subquery)` can be re-run per row on tables without statistics."""
    return Exists(Turn.objects.filter(side__battle=OuterRef("pk"), status=Turn.Status.FAILED))


def battles_counted(*, modality: str, simulated: bool = False) -> QuerySet[Battle]:
    """The battles whose votes count on a leaderboard: anonymous, voted, no identity leak, no failed side, no side
    that failed and was asked again before the vote (the voter saw it fail), no simulated voter (only simulated
    voters with `simulated`, for the staff's board of them), and both sides of `modality`."""
    other = Exists(Side.objects.filter(battle=OuterRef("pk")).exclude(model__modality=modality))
    return Battle.objects.filter(
        mode=Battle.Mode.ANONYMOUS, vote__isnull=False, vote__identity_leak=False, vote__simulated=simulated,
        retried_failure=False,
    ).filter(~battle_failed_side(), ~other)
