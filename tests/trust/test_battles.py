"""The trust screen's battles as the snapshot reads them: the voted battles from their votes' fact rows, and only
the others from the battle table (through its partial index of unvoted battles); together, every live anonymous
battle as the whole battle table gives it."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from arena.facts import prompt_code
from arena.models import Battle, Side, Turn, Vote
from arena.services import vote_record
from leaderboard.snapshots import leaderboard_votes, trust_vote_table
from models_hub.models import ModelEntry
from trust.risk import battle_table

pytestmark = pytest.mark.django_db


def _battle(a: ModelEntry, b: ModelEntry, session: str, prompt: str, *, done: bool = True, when: int = 0,
            mode: str = "anonymous") -> Battle:
    battle = Battle.objects.create(mode=mode, session_key=session, ip_hash=f"ip-{session[:2]}")
    Battle.objects.filter(pk=battle.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=when))
    for position, entry in (("left", a), ("right", b)):
        side = Side.objects.create(battle=battle, position=position, model=entry)
        Turn.objects.create(side=side, index=0, prompt=prompt, response=f"{position} answer",
                            status="done" if done or position == "left" else "running",
                            finished_at=timezone.now() if done or position == "left" else None)
    battle.refresh_from_db()
    return battle


def _rows(session, address, created, voted, answered, prompt) -> list[tuple]:
    return sorted(zip(np.asarray(session).tolist(), np.asarray(address).tolist(),
                      np.round(np.asarray(created), 3).tolist(), np.asarray(voted).tolist(),
                      np.asarray(answered).tolist(), np.asarray(prompt).tolist()))


def test_the_votes_battles_from_their_facts_and_the_rest_from_the_table_are_every_battle():
    """Tried: battles voted through the vote path and through the ORM; unvoted ones, answered and not; a vote left
    off the board for an identity leak; a simulated voter's vote; a battle whose voted flag was cleared behind the
    ORM's back; an imported battle and a named one (neither screened); a battle whose prompt code is unknown."""
    a = ModelEntry.objects.create(slug="tb-a", display_name="TB A")
    b = ModelEntry.objects.create(slug="tb-b", display_name="TB B")
    voted = [_battle(a, b, f"s{i % 3}-voter", f"prompt {i % 4}", when=i) for i in range(9)]
    for i, battle in enumerate(voted[:6]):
        vote_record(public_id=battle.public_id, session_key=battle.session_key, ip="192.0.2.1",
                    choice=("left", "right", "tie")[i % 3])
    Vote.objects.create(battle=voted[6], choice="left", session_key=voted[6].session_key)
    Vote.objects.create(battle=voted[7], choice="left", session_key=voted[7].session_key, identity_leak=True)
    Vote.objects.create(battle=voted[8], choice="right", session_key=voted[8].session_key, simulated=True)
    open_done = [_battle(a, b, "s0-voter", "left open", when=20 + i) for i in range(3)]
    open_half = _battle(a, b, "s1-voter", "still answering", done=False, when=30)
    Battle.objects.filter(pk=voted[1].pk).update(voted=False)  # behind: its fact row still says it was voted
    Battle.objects.filter(pk=open_done[0].pk).update(prompt_code=0)  # written before its prompt's code
    _battle(a, b, "import:llmfao:1", "imported", when=40)
    _battle(a, b, "s2-voter", "named", when=41, mode="named")

    assert Battle.objects.get(pk=voted[0].pk).voted and Battle.objects.get(pk=voted[6].pk).voted
    assert not Battle.objects.get(pk=open_half.pk).voted

    whole = battle_table()
    votes = leaderboard_votes()
    table = trust_vote_table(votes)
    live = ~votes.imported
    rest = battle_table(beyond_votes=True)
    # Only the battles no counted vote is on: the open ones and the two voted off the board.
    assert rest.created.size == 4 + 2
    split = rest.with_vote_battles(table, votes.started[live], votes.prompt[live])
    n = split.of_votes
    assert n == table.vote_ids.size == 7
    assert _rows(np.concatenate([table.session, split.session]), np.concatenate([table.address, split.address]),
                 split.created, split.voted, split.answered, split.prompt) == _rows(
        whole.session, whole.address, whole.created, whole.voted, whole.answered, whole.prompt)
    assert prompt_code("left open") in whole.prompt.tolist()


def test_the_unvoted_battles_are_read_through_their_partial_index():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plan")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN SELECT id FROM arena_battle b WHERE NOT b.voted AND b.mode = 'anonymous'")
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "arena_battle_unvoted" in plan, plan


def test_the_same_on_the_embedded_sqlite(tmp_path):
    """The embedded default reads its battles through the ORM, not the COPY: the same test there, in a process of
    its own."""
    if connection.vendor != "postgresql":
        pytest.skip("this run is the embedded one")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["ARENA_VAR_DIR"] = str(tmp_path)
    test = f"{Path(__file__).resolve()}::test_the_votes_battles_from_their_facts_and_the_rest_from_the_table_are_every_battle"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], env=env,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
