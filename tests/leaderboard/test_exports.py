"""Exports: for holders of the export permission only, LMArena's battle shape, TRL's DPO shape, rankings CSV; and the round trip through an
empty database gives the same leaderboard."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from django.contrib.auth.models import User

from leaderboard.imports import battles_import
from leaderboard.snapshots import leaderboard_snapshot_create
from arena.models import Battle, Vote
from leaderboard.models import LeaderboardSnapshot
from ratings import ranking_to_csv, rate
from ratings.ranking import RANKING_COLUMNS, STYLE_COLUMNS
from models_hub.models import ModelEntry

from .test_leaderboard import Spec, model, record, simulate

EXPORTS = ["/leaderboard/export/battles.jsonl", "/leaderboard/export/battles.csv", "/leaderboard/export/preferences.jsonl"]


@pytest.fixture
def voted(db) -> list[Spec]:
    models = [model("alpha", display_name="Alpha"), model("beta", display_name="Beta"),
              model("gamma", display_name="Gamma", is_inhouse=True), model("delta", display_name="Delta")]
    specs = simulate(models, 260, seed=11)
    for spec in specs:
        record(spec)
    # Recorded but not exported: a leaking vote. Exported with anony false: a named battle.
    record(Spec(models[0], models[1], "left", ["hi"], ["I am Alpha"], ["b"], leak=True))
    record(Spec(models[0], models[1], "left", ["hi"], ["a"], ["b"], mode="named"))
    return specs


@pytest.fixture
def staff_client(client, db):
    """A staff member who holds the export permission."""
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="export_battles", content_type__app_label="leaderboard"))
    client.force_login(user)
    return client


def test_battle_exports_refuse_anonymous_visitors_and_non_staff(client, voted):
    for url in EXPORTS:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    client.force_login(User.objects.create_user("voter", password="pw-voter-123"))
    for url in EXPORTS:
        assert client.get(url).status_code == 403, url


def test_battles_jsonl_has_lmarenas_shape_and_hashes_the_voter(staff_client, voted):
    response = staff_client.get("/leaderboard/export/battles.jsonl")
    assert response.status_code == 200 and 'filename="battles.jsonl"' in response["Content-Disposition"]
    records = [json.loads(line) for line in response.content.decode().splitlines()]
    assert len(records) == 261, "every vote but the leaking one"
    first = records[0]
    assert set(first) == {"question_id", "model_a", "model_b", "winner", "judge", "conversation_a",
                          "conversation_b", "turn", "anony", "language", "tstamp", "modality", "reasons_a", "reasons_b"}
    assert {r["modality"] for r in records} == {"text"}
    assert first["winner"] in ("model_a", "model_b", "tie", "tie (bothbad)")
    assert first["conversation_a"][0]["role"] == "user" and first["conversation_a"][1]["role"] == "assistant"
    assert first["turn"] == len(first["conversation_a"]) // 2
    assert [r["anony"] for r in records].count(False) == 1
    sessions = set(Vote.objects.values_list("session_key", flat=True))
    text = response.content.decode()
    assert not any(f'"{s}"' in text for s in sessions), "voter sessions never leave the database"
    assert all(r["judge"].startswith("arena_user_") for r in records)
    assert len({r["judge"] for r in records}) == len({s.session_key for s in voted} | {"voter"})


def test_preference_pairs_come_from_decisive_single_turn_votes_in_trls_shape(staff_client, voted):
    lines = staff_client.get("/leaderboard/export/preferences.jsonl").content.decode().splitlines()
    pairs = [json.loads(line) for line in lines]
    decisive = [s for s in voted if s.choice in ("left", "right") and len(s.prompts) == 1]
    assert len(pairs) == len(decisive) + 1  # and the decisive named battle
    spec = decisive[0]
    winner = spec.answers_left[0] if spec.choice == "left" else spec.answers_right[0]
    loser = spec.answers_right[0] if spec.choice == "left" else spec.answers_left[0]
    assert pairs[0] == {"prompt": [{"role": "user", "content": spec.prompts[0]}],
                        "chosen": [{"role": "assistant", "content": winner}],
                        "rejected": [{"role": "assistant", "content": loser}]}
    plain = json.loads(staff_client.get("/leaderboard/export/preferences.jsonl?format=plain").content.decode().splitlines()[0])
    assert plain == {"prompt": spec.prompts[0], "chosen": winner, "rejected": loser}


def test_the_rankings_csv_has_the_ratings_command_lines_columns_and_names_the_snapshot(client, voted):
    snapshot = leaderboard_snapshot_create()
    response = client.get("/leaderboard/rankings.csv?category=overall&style=1")
    assert response.status_code == 200
    stamp = snapshot.created_at.strftime("%Y%m%dT%H%M%SZ")
    assert f'filename="leaderboard-overall-style-{stamp}-{snapshot.votes_used}votes.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == RANKING_COLUMNS + STYLE_COLUMNS
    assert {r[1] for r in rows[1:]} == {"Alpha", "Beta", "Gamma", "Delta"}
    # Every row carries the snapshot's numbers, not only the right header.
    overall = {r["model_id"]: r for r in snapshot.payload["categories"]["overall"]["models"]}
    by_name = {m.display_name: overall[m.pk] for m in ModelEntry.objects.filter(pk__in=overall)}
    for row in rows[1:]:
        fields = dict(zip(RANKING_COLUMNS + STYLE_COLUMNS, row))
        stored = by_name[fields["model"]]
        assert float(fields["score"]) == pytest.approx(stored["score"], abs=1e-3)
        assert float(fields["lower"]) == pytest.approx(stored["lower"], abs=1e-3)
        assert float(fields["upper"]) == pytest.approx(stored["upper"], abs=1e-3)
        assert float(fields["votes"]) == stored["votes"]
    plain = list(csv.DictReader(io.StringIO(client.get("/leaderboard/rankings.csv?category=coding").content.decode())))
    assert list(plain[0]) == list(RANKING_COLUMNS)
    coding = {r["model_id"]: r for r in snapshot.payload["categories"]["coding"]["models"]}
    names = dict(ModelEntry.objects.values_list("pk", "display_name"))
    assert {r["model"]: float(r["score"]) for r in plain} == pytest.approx(
        {names[pk]: r["score"] for pk, r in coding.items()}, abs=1e-3)
    assert [r["model"] for r in plain] == [names[pk] for pk in sorted(coding, key=lambda pk: -coding[pk]["score"])]
    assert client.get("/leaderboard/rankings.csv?category=klingon").status_code == 404


def _empty_the_database() -> None:
    Battle.objects.all().delete()
    LeaderboardSnapshot.objects.all().delete()
    ModelEntry.objects.all().delete()


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_an_export_imported_into_an_empty_database_gives_the_same_leaderboard(staff_client, voted, tmp_path, kind):
    before = leaderboard_snapshot_create()
    body = staff_client.get(f"/leaderboard/export/battles.{kind}").content
    path = tmp_path / f"battles.{kind}"
    path.write_bytes(body)
    names_before = dict(ModelEntry.objects.values_list("pk", "display_name"))
    _empty_the_database()
    assert not ModelEntry.objects.exists()

    result = battles_import(path)
    assert result.created == 261 and result.skipped == 0
    after = leaderboard_snapshot_create()
    names_after = dict(ModelEntry.objects.values_list("pk", "display_name"))
    assert after.votes_used == before.votes_used
    assert set(after.payload["categories"]) == set(before.payload["categories"])
    for key, cat in before.payload["categories"].items():
        old = {names_before[r["model_id"]]: r for r in cat["models"]}
        new = {names_after[r["model_id"]]: r for r in after.payload["categories"][key]["models"]}
        assert set(old) == set(new), key
        for name in old:
            for field in ("score", "lower", "upper", "style_score", "style_lower", "style_upper"):
                assert new[name][field] == pytest.approx(old[name][field], abs=1e-6), (key, name, field)
            assert new[name]["votes"] == old[name]["votes"]
    assert not ModelEntry.objects.filter(is_active=True).exists(), "imported models are never drawn into battles"


def test_an_export_reads_with_the_ratings_library_unchanged(staff_client, voted, tmp_path):
    from ratings import read_battles_csv

    path = tmp_path / "battles.csv"
    path.write_bytes(staff_client.get("/leaderboard/export/battles.csv").content)
    battles = read_battles_csv(path)
    assert len(battles.outcome) == 261
    ranking = rate(battles.model_a, battles.model_b, battles.outcome, battles.names)
    # The same fit as the library on the recorded battles themselves (the named one counts here too: the file
    # holds it, marked anony false, and this reader keeps every line).
    alpha, beta = ModelEntry.objects.get(slug="alpha"), ModelEntry.objects.get(slug="beta")
    recorded = voted + [Spec(alpha, beta, "left", ["hi"], ["a"], ["b"], mode="named")]
    names = sorted({s.left.display_name for s in recorded} | {s.right.display_name for s in recorded})
    index = {n: i for i, n in enumerate(names)}
    outcome = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5}
    direct = rate(np.array([index[s.left.display_name] for s in recorded]),
                  np.array([index[s.right.display_name] for s in recorded]),
                  np.array([outcome[s.choice] for s in recorded]), names)
    assert dict(zip(ranking.names, ranking.scores)) == pytest.approx(dict(zip(direct.names, direct.scores)), abs=1e-6)
    text = ranking_to_csv(ranking)
    assert text.startswith("rank,model,score,lower,upper,votes\n") and len(text.splitlines()) == 1 + 4


def test_battle_exports_need_their_own_permission_not_staff_status(client, voted):
    """Tried: a staff user with no permissions. Before, is_staff was enough to download all three exports; now
    the permission leaderboard.export_battles is needed, and given to a plain user it is enough."""
    from django.contrib.auth.models import Permission

    leaderboard_snapshot_create()
    client.force_login(User.objects.create_user("clerk", password="pw-clerk-123", is_staff=True))
    for url in EXPORTS:
        assert client.get(url).status_code == 403, url
    assert "Battles JSONL" not in client.get("/leaderboard/").content.decode()
    analyst = User.objects.create_user("analyst", password="pw-analyst-123")
    analyst.user_permissions.add(Permission.objects.get(codename="export_battles", content_type__app_label="leaderboard"))
    client.force_login(analyst)
    for url in EXPORTS:
        assert client.get(url).status_code == 200, url
    assert "Battles JSONL" in client.get("/leaderboard/").content.decode()


def test_the_export_command_needs_a_user_with_the_permission(voted, tmp_path):
    from django.contrib.auth.models import Permission
    from django.core.management import CommandError, call_command

    User.objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    out = tmp_path / "battles.jsonl"
    with pytest.raises(CommandError, match="lacks the permission"):
        call_command("export_battles", str(out), "--user", "clerk")
    with pytest.raises(CommandError, match="No active user"):
        call_command("export_battles", str(out), "--user", "nobody")
    assert not out.exists()
    analyst = User.objects.create_user("analyst", password="pw-analyst-123")
    analyst.user_permissions.add(Permission.objects.get(codename="export_battles", content_type__app_label="leaderboard"))
    call_command("export_battles", str(out), "--user", "analyst")
    assert len(out.read_text().splitlines()) == 261
