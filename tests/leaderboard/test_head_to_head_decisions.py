"""The head-to-head page's always-valid answer: the verdict and interval of the confidence sequence beside the usual
interval, the votes it still needs, and the provisional mark of a version without enough fresh votes."""

from __future__ import annotations

import pytest

from leaderboard.snapshots import leaderboard_board, leaderboard_snapshot_create
from models_hub.models import ModelEntry
from ratings import sequential_head_to_head
from tests.leaderboard.test_leaderboard import import_csv, model


@pytest.fixture
def family(db, tmp_path):
    parent = model("ours-base", display_name="Ours Base")
    ours = model("ours-v2", display_name="Ours V2", is_inhouse=True, parent=parent, version=2)
    model("rival-far", display_name="Rival Far")
    model("rival-mid", display_name="Rival Mid")
    # Far behind: 300 to 25. Close: 90 to 60, where the usual 95% interval already excludes zero but the
    # confidence sequence, which must hold at every look, does not yet.
    rows = [("Ours V2", "Rival Far", "model_a")] * 300 + [("Ours V2", "Rival Far", "model_b")] * 25
    rows += [("Ours V2", "Rival Mid", "model_a")] * 90 + [("Ours V2", "Rival Mid", "model_b")] * 60
    import_csv(tmp_path, rows)
    leaderboard_snapshot_create()
    return parent, ours


def _rivals(response) -> dict[str, dict]:
    [comparison] = response.context["comparisons"]
    return comparison, {r["name"]: r for r in comparison["rivals"]}


def test_the_page_gives_the_always_valid_verdict_beside_the_usual_interval(client, family):
    response = client.get("/leaderboard/head-to-head/")
    assert response.status_code == 200
    comparison, rivals = _rivals(response)
    far, mid = rivals["Rival Far"], rivals["Rival Mid"]
    assert far["verdict"] == "better" and far["sequence_votes_needed"] == 0
    assert mid["lower"] > 0, "the usual interval excludes zero"
    assert mid["verdict"] == "not yet" and mid["sequence_lower"] < 0 < mid["sequence_upper"]
    assert mid["sequence_lower"] < mid["lower"] and mid["sequence_upper"] > mid["upper"]
    board = leaderboard_board(response.context["snapshot"])
    expected = sequential_head_to_head(board.ranking, "Ours V2", "Rival Mid")
    assert mid["sequence_votes_needed"] == expected.votes_needed > mid["more_votes_needed"]
    html = " ".join(response.content.decode().split())
    assert "Verdict (always valid)" in html and ">not yet</td>" in html and ">better</td>" in html
    assert f"[{expected.lower:.0f}, {expected.upper:.0f}]" in html


def test_a_version_is_provisional_until_it_has_fresh_votes_after_its_last_sibling(client, family, settings):
    parent, ours = family
    settings.ARENA_PROVISIONAL_VOTES = 2000
    comparison, _ = _rivals(client.get("/leaderboard/head-to-head/"))
    assert comparison["provisional"] and comparison["fresh_votes"] == 475
    settings.ARENA_PROVISIONAL_VOTES = 400
    response = client.get("/leaderboard/head-to-head/")
    comparison, _ = _rivals(response)
    assert not comparison["provisional"] and 'class="badge provisional"' not in response.content.decode()
    # A sibling entering resets the count: none of the votes so far came after it.
    ModelEntry.objects.create(slug="ours-v3", display_name="Ours V3", parent=parent, version=3, is_inhouse=True)
    response = client.get("/leaderboard/head-to-head/")
    comparison, _ = _rivals(response)
    assert comparison["provisional"] and comparison["fresh_votes"] == 0
    assert 'class="badge provisional"' in response.content.decode()
