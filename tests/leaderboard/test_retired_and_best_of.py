"""The public leaderboard's retired list, and the head-to-head page's "best of K versions vs X" line for a team's
versions (in-house models of one lineage), judged with ratings.best_of_versions."""

from __future__ import annotations

import pytest
from django.utils import timezone

from leaderboard.selectors import lineage_roots
from leaderboard.snapshots import leaderboard_board, leaderboard_snapshot_create
from models_hub.models import ModelEntry
from ratings import best_of_versions
from tests.leaderboard.test_leaderboard import import_csv, model


@pytest.fixture
def team(db, tmp_path):
    base = model("ours-base", display_name="Ours Base")
    v2 = model("ours-v2", display_name="Ours V2", is_inhouse=True, parent=base, version=2)
    v3 = model("ours-v3", display_name="Ours V3", is_inhouse=True, parent=v2, version=3)
    model("rival", display_name="Rival")
    old = model("old-timer", display_name="Old Timer")
    # V3 far ahead of Rival, V2 level with it; Old Timer played a few battles before it was retired.
    rows = [("Ours V3", "Rival", "model_a")] * 300 + [("Ours V3", "Rival", "model_b")] * 30
    rows += [("Ours V2", "Rival", "model_a")] * 60 + [("Ours V2", "Rival", "model_b")] * 60
    rows += [("Ours Base", "Rival", "model_a")] * 50 + [("Ours Base", "Rival", "model_b")] * 50
    rows += [("Old Timer", "Rival", "model_a")] * 40 + [("Old Timer", "Rival", "model_b")] * 60
    import_csv(tmp_path, rows)
    leaderboard_snapshot_create()
    return base, v2, v3, old


def test_lineage_roots_follow_parents_up(team):
    base, v2, v3, old = team
    assert lineage_roots([v3, old]) == {v3.pk: base.pk, old.pk: old.pk}


def test_the_head_to_head_page_judges_the_best_of_the_teams_versions(client, team):
    response = client.get("/leaderboard/head-to-head/")
    [squad] = response.context["teams"]
    assert squad["k"] == 2 and set(squad["versions"]) == {"Ours V2", "Ours V3"}
    lines = {line["rival"]: line for line in squad["lines"]}
    assert "Ours Base" in lines and "Ours V2" not in lines, "the versions are not their own rivals; their base is"
    board = leaderboard_board(response.context["snapshot"])
    expected = best_of_versions(board.ranking, ["Ours V2", "Ours V3"], "Rival")
    assert lines["Rival"]["verdict"] == expected.verdict == "better" and lines["Rival"]["best"] == "Ours V3"
    html = " ".join(response.content.decode().split())
    assert "Best of 2 versions vs Rival:" in html


def test_the_leaderboard_lists_retired_models_with_date_and_last_score(client, team):
    *_, old = team
    when = timezone.now().replace(year=2026, month=3, day=14)
    ModelEntry.objects.filter(pk=old.pk).update(retired_at=when, is_active=False)
    response = client.get("/leaderboard/")
    [row] = response.context["retired"]
    board = leaderboard_board(response.context["snapshot"])
    score = next(r["score"] for r in board.rows if r["name"] == "Old Timer")
    assert row["name"] == "Old Timer" and row["score"] == pytest.approx(score)
    html = " ".join(response.content.decode().split())
    assert "Retired models" in html and "2026-03-14" in html and f"{score:.0f}" in html
    ModelEntry.objects.filter(pk=old.pk).update(retired_at=None, is_active=True)
    assert "Retired models" not in client.get("/leaderboard/").content.decode()
