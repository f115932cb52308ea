"""arena.rows: the vote path's hand-written statements give what the ORM gives (every field, converted as the ORM
converts it, the relations set so that following them costs no query), on PostgreSQL here and on the embedded
default's SQLite in a process of its own."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from arena.models import Battle, Side, SimulatedSession, Turn, Vote
from arena.rows import battle_by_public_id, battle_turns, vote_insert
from models_hub.models import ModelEntry

ROOT = Path(__file__).resolve().parents[2]


def fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def make_battle() -> Battle:
    """Two sides (one a preview model), two turns each: done with style counts and a stop, and one running."""
    left = ModelEntry.objects.create(slug="rows-a", display_name="A", provider="openai", base_url="http://x/v1",
                                     remote_model="a")
    right = ModelEntry.objects.create(slug="rows-b", display_name="B", provider="openai", base_url="http://x/v1",
                                      remote_model="b", visibility="preview", codename="heron")
    battle = Battle.objects.create(session_key="rows-session", categories=["coding", "lang:en"])
    now = timezone.now()
    for position, model in (("right", right), ("left", left)):  # created out of order: the read orders them
        side = Side.objects.create(battle=battle, position=position, model=model)
        Turn.objects.create(side=side, index=0, prompt="Hello?", response="**Hi** there", status=Turn.Status.DONE,
                            stop_requested=True, output_tokens=3, tokens_per_second=41.5, style_bold=1,
                            started_at=now - datetime.timedelta(seconds=5), finished_at=now)
        Turn.objects.create(side=side, index=1, prompt="And?", status=Turn.Status.RUNNING, started_at=now)
    return battle


def compare() -> str:
    """Check the reads against the ORM on the current database; returns its vendor."""
    battle = make_battle()
    turns, voted = battle_turns(battle)
    expected = list(Turn.objects.filter(side__battle=battle).select_related("side__model")
                    .order_by("side__position", "index"))
    assert voted is None
    assert [fields(t) for t in turns] == [fields(t) for t in expected]
    with CaptureQueriesContext(connection) as queries:
        seen = [(t.side.position, fields(t.side), fields(t.side.model), t.side.battle.pk, t.side.model.public_name)
                for t in turns]
    assert not queries.captured_queries, queries.captured_queries
    assert seen == [(t.side.position, fields(t.side), fields(t.side.model), battle.pk, t.side.model.public_name)
                    for t in expected]
    assert [s[-1] for s in seen] == ["A", "A", "heron", "heron"]
    assert isinstance(turns[0].stop_requested, bool) and isinstance(turns[0].finished_at, datetime.datetime)

    vote = vote_insert(battle, choice="right", session_key="rows-session", identity_leak=True)
    assert fields(vote) == fields(Vote.objects.get(battle=battle))
    assert vote.identity_leak is True and vote.simulated is False and vote.battle is battle
    assert battle_turns(battle)[1] == "right"
    with pytest.raises(IntegrityError), transaction.atomic():
        vote_insert(battle, choice="left", session_key="rows-session", identity_leak=False)
    assert Vote.objects.get(battle=battle).choice == "right"
    # A simulated voter's session: its vote is marked as it is written, as every other vote's save marks it.
    SimulatedSession.objects.create(session_key="rows-simulated", voter="always-a")
    other = Battle.objects.create(session_key="rows-simulated")
    assert vote_insert(other, choice="left", session_key="rows-simulated", identity_leak=False).simulated is True
    assert Vote.objects.get(battle=other).simulated is True
    # With its fact row (arena.facts): written by the same statement on PostgreSQL (a CTE), else by a second
    # insert (and a simulated check where an insert returns no rows); either way the row is the one
    # fact_values gives for the vote as stored, simulated mark included.
    from arena.facts import fact_values
    from arena.models import VoteFact

    third = Battle.objects.create(session_key="rows-simulated", categories=["coding", "lang:en"])
    for side in battle.sides.select_related("model"):
        mine = Side.objects.create(battle=third, position=side.position, model=side.model)
        Turn.objects.create(side=mine, index=0, prompt="Hi?", response="# Title\n- a\n- b", status=Turn.Status.DONE,
                            finished_at=timezone.now(), style_tokens=5 + (side.position == "left"), style_headers=1,
                            style_list_items=2, style_bold=0)
    turns3, _ = battle_turns(third)
    models3 = {t.side.position: t.side.model for t in turns3}
    with CaptureQueriesContext(connection) as queries:
        cast = vote_insert(third, choice="tie", session_key="rows-simulated", identity_leak=False,
                           fact=lambda v: fact_values(vote=v, battle=third, turns=turns3, models=models3))
    # Elsewhere: the vote, the battle marked voted, the fact (and the simulated check where an insert returns none).
    alone = 3 if connection.features.can_return_columns_from_insert else 4
    assert len(queries.captured_queries) == (1 if connection.vendor == "postgresql" else alone)
    assert Battle.objects.get(pk=third.pk).voted and Battle.objects.get(pk=other.pk).voted
    stored = VoteFact.objects.get(vote_id=cast.pk)
    expected = fact_values(vote=Vote.objects.get(pk=cast.pk), battle=third, turns=turns3, models=models3)
    assert {k: getattr(stored, k) for k in expected} == expected
    assert stored.simulated is True and stored.counted is True and stored.style_left_0 == 6
    assert not VoteFact.objects.filter(vote__battle=battle).exists()  # without ``fact``, no row

    found, other = battle_by_public_id(battle.public_id, modality="text", for_update=False)
    assert fields(found) == fields(Battle.objects.get(pk=battle.pk)) and other is False
    assert found.categories == ["coding", "lang:en"]
    assert battle_by_public_id(battle.public_id, modality="speech", for_update=False)[1] is True
    assert battle_by_public_id("no-such-battle", modality="text", for_update=False) == (None, False)
    empty = Battle.objects.create(session_key="rows-session")
    assert battle_turns(empty) == ([], None)
    return connection.vendor


def test_the_reads_match_the_orm_on_postgresql(db):
    assert compare() == "postgresql"


def test_a_battle_read_for_update_is_locked_until_the_transaction_ends(transactional_db):
    """Tried: a second connection updating the battle while the first holds it for a vote."""
    import psycopg

    battle = make_battle()
    params = connection.get_connection_params()
    with transaction.atomic():
        battle_by_public_id(battle.public_id, modality="text", for_update=True)
        with psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname")},
                             autocommit=True) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("UPDATE arena_battle SET session_key = session_key WHERE id = %s", [battle.pk])
    with psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname")},
                         autocommit=True) as other:
        other.execute("UPDATE arena_battle SET session_key = session_key WHERE id = %s", [battle.pk])


def test_the_reads_match_the_orm_on_the_embedded_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(ARENA_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    script = ("import django; django.setup()\n"
              "from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
              "from tests.arena.test_rows import compare; print(compare())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "sqlite"


def test_a_vote_saved_through_the_orm_is_marked_simulated_in_a_fresh_process(tmp_path):
    """The pre_save receiver of arena.simulated is registered when Django starts, not only where a module happens
    to import it. Tried in a process of its own (the test process imports arena.simulated elsewhere): a simulated
    voter's vote saved through the ORM is marked, and its fact row says so; another session's is not."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(ARENA_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    script = (
        "import sys, django; django.setup()\n"
        "from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
        "from arena.models import Battle, SimulatedSession, Vote, VoteFact\n"
        "SimulatedSession.objects.create(session_key='sim-orm', voter='always-a')\n"
        "ours, theirs = Battle.objects.create(session_key='sim-orm'), Battle.objects.create(session_key='person')\n"
        "a = Vote.objects.create(battle=ours, choice='left', session_key='sim-orm')\n"
        "b = Vote.objects.create(battle=theirs, choice='left', session_key='person')\n"
        "a.refresh_from_db(); b.refresh_from_db()\n"
        "print(a.simulated, b.simulated, VoteFact.objects.get(vote=a).simulated, VoteFact.objects.get(vote=b).simulated)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True False True False"
