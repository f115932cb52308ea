"""The vote path's statements, as SQL written once: a battle by its public id, a battle's turns with their sides
and models (and its vote), and the vote's insert. A resume and a vote make five such statements; compiling each
as a queryset cost more CPU than PostgreSQL spent running it. The rows become model instances as the ORM would
make them (``Model.from_db``, each field's database converters), with the relations the callers follow already
set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone
from django.db.models.expressions import Col

from models_hub.models import ModelEntry

from .models import Battle, SimulatedSession, Side, Turn, Vote, VoteFact


@dataclass
class _Part:
    model: type[Model]
    alias: str

    @cached_property
    def fields(self) -> list:
        return list(self.model._meta.concrete_fields)

    @cached_property
    def attnames(self) -> list[str]:
        return [f.attname for f in self.fields]


class _Select:
    """The concrete columns of several models in one row, and the instances back from such a row."""

    def __init__(self, *parts: _Part) -> None:
        self.parts = parts
        self._converters: dict[str, list[list[tuple[Any, Col]]]] = {}

    def columns(self) -> str:
        qn = connection.ops.quote_name
        return ", ".join(f"{p.alias}.{qn(f.column)}" for p in self.parts for f in p.fields)

    @property
    def width(self) -> int:
        return sum(len(p.fields) for p in self.parts)

    def _converters_for(self) -> list[list[tuple[Any, Col]]]:
        vendor = connection.vendor
        if vendor not in self._converters:
            per_part = []
            for p in self.parts:
                converters = []
                for f in p.fields:
                    col = f.get_col(p.model._meta.db_table)
                    converters.append((connection.ops.get_db_converters(col) + f.get_db_converters(connection), col))
                per_part.append(converters)
            self._converters[vendor] = per_part
        return self._converters[vendor]

    def instances(self, row: tuple) -> list[Model]:
        out, at = [], 0
        for p, converters in zip(self.parts, self._converters_for()):
            values = list(row[at:at + len(converters)])
            for i, (functions, col) in enumerate(converters):
                for function in functions:
                    values[i] = function(values[i], col, connection)
            out.append(p.model.from_db(connection.alias, p.attnames, values))
            at += len(converters)
        return out


_BATTLE = _Select(_Part(Battle, "b"))
_TURN = _Select(_Part(Turn, "t"), _Part(Side, "s"), _Part(ModelEntry, "m"))
_SQL: dict[tuple, str] = {}


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _statement(key: tuple, build: Callable[[Callable[[str], str]], str]) -> str:
    """The SQL ``build(quote_name)`` writes, built once per database vendor and ``key``."""
    key = (connection.vendor, *key)
    if key not in _SQL:
        _SQL[key] = build(connection.ops.quote_name)
    return _SQL[key]


def battle_by_public_id(public_id: str, *, modality: str, for_update: bool) -> tuple[Battle | None, bool]:
    """(the battle, whether a side's model is not of ``modality``), locked for the transaction with
    ``for_update`` where the database locks rows; (None, False) for no such battle."""
    lock = for_update and connection.features.has_select_for_update
    sql = _statement(("battle", lock), lambda qn: (
        f"SELECT {_BATTLE.columns()}, EXISTS(SELECT 1 FROM {_table(Side)} s JOIN {_table(ModelEntry)} m "
        f"ON m.{qn('id')} = s.{qn('model_id')} WHERE s.{qn('battle_id')} = b.{qn('id')} "
        f"AND NOT (m.{qn('modality')} = %s)) FROM {_table(Battle)} b WHERE b.{qn('public_id')} = %s"
        + (" FOR UPDATE" if lock else "")
    ))
    with connection.cursor() as cursor:
        cursor.execute(sql, [modality, public_id])
        row = cursor.fetchone()
    if row is None:
        return None, False
    (battle,) = _BATTLE.instances(row)
    return battle, bool(row[_BATTLE.width])


def battle_turns(battle: Battle) -> tuple[list[Turn], str | None]:
    """(every turn of the battle by side position and index, each with ``side`` and ``side.model`` set; the vote's
    choice or None). One query."""
    sql = _statement(("turns",), lambda qn: (
        f"SELECT {_TURN.columns()}, (SELECT v.{qn('choice')} FROM {_table(Vote)} v WHERE v.{qn('battle_id')} = %s) "
        f"FROM {_table(Turn)} t JOIN {_table(Side)} s ON s.{qn('id')} = t.{qn('side_id')} "
        f"JOIN {_table(ModelEntry)} m ON m.{qn('id')} = s.{qn('model_id')} "
        f"WHERE s.{qn('battle_id')} = %s ORDER BY s.{qn('position')}, t.{qn('index')}"
    ))
    with connection.cursor() as cursor:
        cursor.execute(sql, [battle.pk, battle.pk])
        rows = cursor.fetchall()
    if not rows:
        vote = Vote.objects.filter(battle=battle).values_list("choice", flat=True).first()
        return [], vote
    sides: dict[int, Side] = {}
    turns = []
    for row in rows:
        turn, side, model = _TURN.instances(row)
        if side.pk not in sides:
            Side.model.field.set_cached_value(side, model)
            Side.battle.field.set_cached_value(side, battle)
            sides[side.pk] = side
        Turn.side.field.set_cached_value(turn, sides[side.pk])
        turns.append(turn)
    return turns, rows[0][_TURN.width]


def vote_insert(battle: Battle, *, choice: str, session_key: str, identity_leak: bool,
                fact: Callable[[Vote], dict[str, Any]] | None = None) -> Vote:
    """Insert the battle's vote in one statement, marked simulated when its session is a simulated voter's (the
    rule arena.simulated applies to every other vote as it is saved). A second vote on the battle raises
    IntegrityError (one vote per battle).

    ``fact(vote)``: the vote's fact row (arena.facts.fact_values) for a vote with every field but its id known;
    it is inserted by the same statement on PostgreSQL (a CTE; its ``simulated`` is the vote's as inserted),
    else by a second one. The battle is marked voted by the same statement (or one more)."""
    returning = connection.features.can_return_columns_from_insert
    now = timezone.now()
    field = Vote._meta.get_field("created_at")
    vote = Vote.from_db(connection.alias, ["id", "battle_id", "choice", "session_key", "identity_leak", "simulated",
                                           "created_at"],
                        [None, battle.pk, choice, session_key, identity_leak, False, now])
    Vote.battle.field.set_cached_value(vote, battle)
    values = None if fact is None else fact(vote)
    # PostgreSQL takes an INSERT in a WITH clause; SQLite returns rows from an insert but takes none there.
    together = values is not None and returning and connection.vendor == "postgresql"
    columns = [c for c in values if c != "simulated"] if together else []
    sql = _statement(("vote", returning, tuple(columns)), lambda qn: (
        f"INSERT INTO {_table(Vote)} ({qn('battle_id')}, {qn('choice')}, {qn('session_key')}, "
        f"{qn('identity_leak')}, {qn('simulated')}, {qn('created_at')}) VALUES (%s, %s, %s, %s, "
        f"EXISTS(SELECT 1 FROM {_table(SimulatedSession)} WHERE {qn('session_key')} = %s), %s)"
        + (f" RETURNING {qn('id')}, {qn('simulated')}" if returning else "")
    ) if not columns else (
        f"WITH b AS (UPDATE {_table(Battle)} SET {qn('voted')} = true WHERE {qn('id')} = %s), "
        f"v AS (INSERT INTO {_table(Vote)} ({qn('battle_id')}, {qn('choice')}, {qn('session_key')}, "
        f"{qn('identity_leak')}, {qn('simulated')}, {qn('created_at')}) VALUES (%s, %s, %s, %s, "
        f"EXISTS(SELECT 1 FROM {_table(SimulatedSession)} WHERE {qn('session_key')} = %s), %s) "
        f"RETURNING {qn('id')}, {qn('simulated')}) "
        f"INSERT INTO {_table(VoteFact)} ({qn('vote_id')}, {qn('simulated')}, {', '.join(qn(c) for c in columns)}) "
        f"SELECT v.{qn('id')}, v.{qn('simulated')}, {', '.join(['%s'] * len(columns))} FROM v "
        f"RETURNING {qn('vote_id')}, {qn('simulated')}"
    ))
    params = [battle.pk] if columns else []
    params += [battle.pk, choice, session_key, identity_leak, session_key, field.get_db_prep_save(now, connection)]
    params += [VoteFact._meta.get_field(c).get_db_prep_save(values[c], connection) for c in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            pk, simulated = cursor.fetchone()
        else:
            pk = cursor.lastrowid
            simulated = SimulatedSession.objects.filter(session_key=session_key).exists()
    vote.pk, vote.simulated = pk, bool(simulated)
    if not columns:
        Battle.objects.filter(pk=battle.pk).update(voted=True)
        if values is not None:
            VoteFact.objects.create(vote_id=pk, **{**values, "simulated": vote.simulated})
    battle.voted = True
    return vote
