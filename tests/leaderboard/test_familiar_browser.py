"""A first look that is not empty, and speed and reasons beside the scores, in a real headless Chromium: empty
boards say so without axes and point at the demo board; the demo board is full and marked; the leaderboard shows
each model's median speed and pool, a dash where a model was never timed, and the reasons voters gave."""

from __future__ import annotations

import statistics

import pytest
from django.core.management import call_command

from arena.models import Turn, Vote
from tests.browser import SCREENSHOTS

from .test_leaderboard import model, record, simulate
from .test_leaderboard_browser import snapshot_elsewhere

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_fresh_arena_shows_sentences_not_empty_axes_and_a_full_demo_board(chromium, arena):
    snapshot_elsewhere()  # the timer's first snapshot on an arena without votes
    call_command("load_demo_board")
    page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{arena.url}/leaderboard/")
    assert "No model has enough votes" in page.locator("[data-empty]").inner_text()
    assert page.locator(".main-svg").count() == 0 and not page.locator("[data-plots]").is_visible()
    page.click("[data-empty] [data-demo-link] a")
    page.wait_for_selector(".lb-table tbody tr")
    assert "demo" in page.locator("h1").inner_text() and page.locator("[data-demo]").is_visible()
    assert "CC BY 4.0" in page.locator("[data-demo]").inner_text()
    assert page.locator(".lb-table tbody tr").count() == 59
    page.wait_for_selector("#plot-scores .main-svg", timeout=20_000)
    page.wait_for_selector("#plot-winrate .main-svg", timeout=20_000)
    assert not page.locator("#plot-votes").is_visible(), "the sample battles have no dates: no empty time axis"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "leaderboard-demo.png"), full_page=True)
    page.goto(f"{arena.url}/leaderboard/head-to-head/?board=demo")
    assert "demo" in page.locator("h1").inner_text() and page.locator("[data-empty]").is_visible()
    assert page.locator(".main-svg").count() == 0
    page.goto(f"{arena.url}/speech/leaderboard/")
    assert "No voice votes yet" in page.locator("#speech-board-empty").inner_text()
    assert page.locator(".main-svg, svg").count() == 0
    assert errors == []


def test_the_leaderboard_shows_median_speed_pool_and_reasons_beside_the_score(chromium, arena):
    models = [model("swift-8b", display_name="Swift 8B", pool="gpu-h100"),
              model("steady-8b", display_name="Steady 8B", pool="cpu"),
              model("untimed-8b", display_name="Untimed 8B")]
    for spec in simulate(models, 60, seed=2):
        record(spec)
    for i, turn in enumerate(Turn.objects.exclude(side__model=models[2]).order_by("pk")):
        Turn.objects.filter(pk=turn.pk).update(tokens_per_second=10.0 + (i * 7) % 50, time_to_first_token=0.1 + (i % 9) / 10)
    vote = Vote.objects.filter(battle__sides__model=models[0], battle__sides__position="left").first()
    Vote.objects.filter(pk=vote.pk).update(reasons={"left": ["helpful", "clear"], "right": ["refused"]})
    snapshot_elsewhere()
    page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{arena.url}/leaderboard/")
    page.wait_for_selector("[data-speed] tbody tr")
    row = page.locator("[data-speed] tr[data-model='Swift 8B']")
    turns = Turn.objects.filter(side__model=models[0])
    assert row.locator("[data-tps]").inner_text() == f"{statistics.median(t.tokens_per_second for t in turns):.1f}"
    assert row.locator("[data-ttft]").inner_text() == f"{statistics.median(t.time_to_first_token for t in turns):.2f} s"
    assert row.locator("[data-pool]").inner_text() == "gpu-h100"
    assert {b.strip() for b in row.locator("[data-reasons] .badge").all_inner_texts()} == {"Helpful 1", "Clear 1"}
    untimed = page.locator("[data-speed] tr[data-model='Untimed 8B']")
    assert [untimed.locator(f"[{c}]").inner_text() for c in ("data-tps", "data-ttft", "data-pool")] == ["—"] * 3
    page.screenshot(path=str(SCREENSHOTS / "leaderboard-speed.png"), full_page=True)
