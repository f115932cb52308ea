"""The demo board: the sample battles fitted into a board of their own, public at ?board=demo and clearly marked,
never mixed with the arena's votes, registry or exports; and the empty boards say so instead of drawing axes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command

from arena.models import Battle, Vote
from leaderboard.demo import SAMPLE_BATTLES
from leaderboard.models import LeaderboardSnapshot
from leaderboard.snapshots import leaderboard_board, leaderboard_latest, leaderboard_snapshot_create
from models_hub.models import ModelEntry

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "llmfao"


def test_the_shipped_sample_battles_are_the_attributed_llmfao_file():
    assert SAMPLE_BATTLES.read_bytes() == (FIXTURES / "battles.csv").read_bytes()
    notice = (SAMPLE_BATTLES.parent / "README.md").read_text()
    assert "CC BY 4.0" in notice and "Dmitry Ustalov" in notice


def test_load_demo_board_fits_the_sample_battles_on_a_board_of_their_own(client):
    call_command("load_demo_board")
    call_command("load_demo_board")  # unchanged: nothing new stored
    assert LeaderboardSnapshot.objects.filter(board="demo").count() == 1
    assert (Battle.objects.count(), Vote.objects.count(), ModelEntry.objects.count()) == (0, 0, 0)
    assert leaderboard_latest() is None, "the public board has no snapshot from the demo"
    demo = leaderboard_latest("demo")
    with open(FIXTURES / "arena_rank_sandwich.csv", newline="") as fh:
        reference = {r["model"]: float(r["score"]) for r in csv.DictReader(fh)}
    rows = leaderboard_board(demo).rows
    assert len(rows) == len(reference) and demo.votes_used == sum(1 for _ in open(SAMPLE_BATTLES)) - 1
    assert max(abs(r["score"] - reference[r["name"]]) for r in rows) < 0.5, "the same fit as arena-rank's"
    html = client.get("/leaderboard/?board=demo").content.decode()
    assert "data-demo" in html and "sample battles" in html and rows[0]["name"] in html
    assert client.get("/leaderboard/head-to-head/?board=demo").status_code == 200
    assert client.get("/leaderboard/rankings.csv?board=demo").status_code == 200
    public = client.get("/leaderboard/").content.decode()
    assert rows[0]["name"] not in public and "?board=demo" in public, "the empty board points at the demo"


def test_the_demo_is_in_no_export_and_no_public_snapshot():
    call_command("load_demo_board")
    assert leaderboard_snapshot_create() is not None
    public = leaderboard_latest()
    assert public.votes_used == 0 and public.payload["categories"]["overall"]["models"] == []


def test_the_exports_hold_no_demo_battle(client):
    call_command("load_demo_board")
    user = User.objects.create_user("exporter", password="pw-export-123")
    user.user_permissions.add(Permission.objects.get(codename="export_battles"))
    client.force_login(user)
    assert client.get("/leaderboard/export/battles.jsonl").content == b""
    assert [json.loads(x) for x in client.get("/leaderboard/export/preferences.jsonl").content.splitlines()] == []


def test_a_malformed_demo_file_is_refused_and_stores_nothing(tmp_path):
    bad = tmp_path / "battles.csv"
    bad.write_text("model_a,model_b,winner\nA,B,model_a\nA,B,somebody\n")
    with pytest.raises(CommandError, match="line 3"):
        call_command("load_demo_board", file=str(bad))
    assert not LeaderboardSnapshot.objects.exists()


def test_an_empty_board_says_so_and_draws_no_axes(client):
    leaderboard_snapshot_create(force=True)
    html = client.get("/leaderboard/").content.decode()
    assert "No model has enough votes" in html and "data-plots hidden" in html
