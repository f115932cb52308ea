"""Speed beside the score and reasons with the vote, as the snapshot stores them and the exports carry them: each
model's median tokens per second and time to the first token over its timed turns of anonymous battles, and the
voters' reason tags counted per model, which never move a score."""

from __future__ import annotations

import csv
import io
import json
import random
import statistics

import pytest
from django.contrib.auth.models import Permission, User

from arena.models import Turn, Vote
from leaderboard.exports import battle_records, preference_pair
from leaderboard.snapshots import leaderboard_board, leaderboard_snapshot_create

from .test_leaderboard import Spec, model, record, simulate

pytestmark = pytest.mark.django_db


@pytest.fixture
def played(db):
    models = [model("alpha", display_name="Alpha", pool="gpu-a"), model("beta", display_name="Beta", pool="gpu-b"),
              model("gamma", display_name="Gamma"), model("never-timed", display_name="Never Timed")]
    for spec in simulate(models, 120, seed=3):
        record(spec)
    named = record(Spec(models[0], models[1], "left", ["hi"], ["a"], ["b"], mode="named"))
    rng = random.Random(9)
    for turn in Turn.objects.exclude(side__model=models[3]).order_by("pk"):
        turn.tokens_per_second = None if rng.random() < 0.1 else rng.uniform(5, 80)
        turn.time_to_first_token = None if rng.random() < 0.1 else rng.uniform(0.05, 3)
        turn.save(update_fields=["tokens_per_second", "time_to_first_token"])
    # Timed, but not counted for speed: a named battle's turns, and a failed turn.
    Turn.objects.filter(side__battle=named).update(tokens_per_second=10_000.0, time_to_first_token=99.0)
    failed = Turn.objects.filter(side__model=models[0]).exclude(side__battle=named).first()
    Turn.objects.filter(pk=failed.pk).update(status="failed", tokens_per_second=10_000.0)
    return models


def expected_speed(entry) -> tuple[float | None, float | None, int]:
    """The definition: the plain median over the model's done turns of anonymous battles, each figure over the
    turns that have it."""
    turns = Turn.objects.filter(side__model=entry, status="done", side__battle__mode="anonymous")
    tps = [t.tokens_per_second for t in turns if t.tokens_per_second is not None]
    ttft = [t.time_to_first_token for t in turns if t.time_to_first_token is not None]
    timed = [t for t in turns if t.tokens_per_second is not None or t.time_to_first_token is not None]
    return (statistics.median(tps) if tps else None, statistics.median(ttft) if ttft else None, len(timed))


def test_the_snapshot_holds_each_models_median_speed_and_pool(played):
    snapshot = leaderboard_snapshot_create()
    board = leaderboard_board(snapshot)
    rows = {r["name"]: r for r in board.rows}
    for entry in played[:3]:
        tps, ttft, timed = expected_speed(entry)
        speed = rows[entry.display_name]["speed"]
        assert speed["tokens_per_second"] == pytest.approx(tps) and speed["first_token_seconds"] == pytest.approx(ttft)
        assert speed["turns"] == timed and speed["pool"] == entry.pool
    assert rows["Never Timed"]["speed"] is None, "a model with no timed turn has no figures"


def test_reasons_are_counted_per_model_and_never_move_a_score(played):
    before = leaderboard_snapshot_create()
    rng = random.Random(4)
    tags = ["correct", "helpful", "wrong", "too_long"]
    expected: dict[str, dict[str, int]] = {}
    for vote in Vote.objects.filter(battle__mode="anonymous").select_related("battle").order_by("pk")[:60]:
        reasons = {"left": rng.sample(tags, rng.randrange(3)), "right": rng.sample(tags, rng.randrange(3))}
        Vote.objects.filter(pk=vote.pk).update(reasons=reasons)
        for side in vote.battle.sides.select_related("model"):
            counts = expected.setdefault(side.model.display_name, {})
            for tag in reasons[side.position]:
                counts[tag] = counts.get(tag, 0) + 1
    after = leaderboard_snapshot_create()
    assert after is not None, "new reasons make a new snapshot"
    assert after.payload["categories"] == before.payload["categories"], "reasons never change the fit"
    rows = {r["name"]: r for r in leaderboard_board(after).rows}
    for name, counts in expected.items():
        assert {r["tag"]: r["count"] for r in rows[name]["reasons"]} == {t: n for t, n in counts.items() if n}


def test_the_exports_carry_each_answers_reasons(played, client):
    decisive = Vote.objects.filter(battle__mode="anonymous", choice__in=["left", "right"]).order_by("pk")
    votes = [v for v in decisive if Turn.objects.filter(side__battle=v.battle_id).count() == 2][:2]  # one turn
    Vote.objects.filter(pk=votes[0].pk).update(reasons={"left": ["clear", "correct"], "right": ["refused"]})
    user = User.objects.create_user("exporter", password="pw-export-123")
    user.user_permissions.add(Permission.objects.get(codename="export_battles"))
    client.force_login(user)
    records = [json.loads(line) for line in client.get("/leaderboard/export/battles.jsonl").content.decode().splitlines()]
    by_id = {r["question_id"]: r for r in records}
    given = by_id[votes[0].battle.public_id]
    assert (given["reasons_a"], given["reasons_b"]) == (["clear", "correct"], ["refused"])
    plain = by_id[votes[1].battle.public_id]
    assert (plain["reasons_a"], plain["reasons_b"]) == ([], [])
    rows = {r["question_id"]: r for r in csv.DictReader(io.StringIO(
        client.get("/leaderboard/export/battles.csv").content.decode()))}
    assert json.loads(rows[votes[0].battle.public_id]["reasons_a"]) == ["clear", "correct"]
    assert json.loads(rows[votes[0].battle.public_id]["reasons_b"]) == ["refused"]
    record_ = next(r for r in battle_records() if r["question_id"] == votes[0].battle.public_id)
    pair = preference_pair(record_)
    chosen, rejected = (["clear", "correct"], ["refused"]) if votes[0].choice == "left" else (["refused"], ["clear", "correct"])
    assert (pair["chosen_reasons"], pair["rejected_reasons"]) == (chosen, rejected)
