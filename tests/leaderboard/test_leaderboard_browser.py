"""The leaderboard in a real headless Chromium against a live arena: table, plots, switches and the live update."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from leaderboard.snapshots import leaderboard_snapshot_create
from tests.browser import SCREENSHOTS, LiveArena

from .test_leaderboard import Spec, model, record, simulate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def snapshot_elsewhere():
    """Store a snapshot from another thread, as a Celery worker would: Playwright's event loop owns this one,
    and publishing to the channel layer from inside a running loop is refused."""
    result: list = []

    def job():
        try:
            result.append(leaderboard_snapshot_create())
        finally:
            connection.close()

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(60)
    return result[0]


@pytest.fixture
def arena(tmp_path):
    live = LiveArena(tmp_path / "daphne.log").start()
    yield live
    live.stop()


@pytest.fixture
def board(db):
    models = [
        model("gpt-oss-20b", display_name="GPT-OSS 20B", organization="OpenAI", license="Apache-2.0"),
        model("qwen3-8b", display_name="Qwen3 8B", organization="Alibaba", license="Apache-2.0"),
        model("llama-3-1-8b", display_name="Llama 3.1 8B", organization="Meta", license="Llama 3.1"),
        model("mistral-7b", display_name="Mistral 7B Instruct", organization="Mistral AI", license="Apache-2.0"),
        model("gemma-2-9b", display_name="Gemma 2 9B", organization="Google", license="Gemma"),
        model("our-moe", display_name="Our MoE 8x1B", organization="Our team", license="Internal", is_inhouse=True),
        model("phi-3-mini", display_name="Phi-3 Mini", organization="Microsoft", license="MIT"),
    ]
    secret = model("secret-next", display_name="Secret Next", organization="Hidden", visibility="preview",
                   codename="nightjar")
    for spec in simulate(models + [secret], 900, seed=5, strengths=[1.4, 1.2, 0.7, 0.3, 0.9, 1.0, 0.1, 1.5]):
        record(spec)
    snapshot_elsewhere()
    return models, secret


def test_the_leaderboard_renders_its_table_and_plots_and_updates_live(chromium, arena, board):
    models, secret = board
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{arena.url}/leaderboard/")
    page.wait_for_selector(".lb-table tbody tr")
    for plot in ("plot-scores", "plot-winrate", "plot-battles", "plot-votes"):
        page.wait_for_selector(f"#{plot} .main-svg", timeout=20_000)
    page.wait_for_selector("[data-live]:not([hidden])", timeout=15_000)
    assert errors == []
    names = page.locator(".lb-table tbody td.model .name").all_text_contents()
    assert len(names) == 7 and "Our MoE 8x1B" in names
    assert page.locator("tr.inhouse").count() == 1
    html = page.content()
    assert "Secret Next" not in html and "nightjar" not in html
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "leaderboard.png"), full_page=True)

    # Sorting by votes puts the fewest first.
    page.click("th:has-text('Votes')")
    votes = [int(v) for v in page.locator(".lb-table tbody tr td:nth-child(5)").all_text_contents()]
    assert votes == sorted(votes)

    # The style switch swaps the table without a reload.
    page.check("[data-style]", force=True)
    page.wait_for_selector(".lb-meta:has-text('style-controlled')")
    assert "style=1" in page.url

    # A new snapshot lands: the open page shows the new vote count by itself.
    record(Spec(models[0], models[1], "left", ["one more"], ["a"], ["b"]))
    snapshot = snapshot_elsewhere()
    page.wait_for_selector(f".lb-meta[data-snapshot='{snapshot.pk}']", timeout=20_000)
    assert f"{snapshot.votes_used} votes" in page.text_content(".lb-meta")
    assert errors == []
    context.close()


def test_the_head_to_head_page_renders(chromium, arena, board):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{arena.url}/leaderboard/head-to-head/")
    page.wait_for_selector(".h2h tbody tr")
    assert page.locator(".h2h tbody tr").count() == 6
    page.screenshot(path=str(SCREENSHOTS / "head-to-head.png"), full_page=True)
    context.close()


def test_the_plots_of_an_imported_board_show_whole_labels_and_whole_vote_counts(chromium, arena, db, tmp_path):
    from leaderboard.imports import battles_import

    # Long names as public battle files have them, and few votes: where plotly picked ticks such as 4.06.
    names = ["Meta-Llama-3.1-405B-Instruct-Turbo", "Qwen2.5-72B-Instruct (2024-09-19)", "gemma-2-27b-it", "phi-3"]
    lines = ["model_a,model_b,winner"]
    for k in range(7):
        a, b = names[k % 4], names[(k + 1 + k // 4) % 4]
        lines.append(f'"{a}","{b}",{"model_a" if k % 3 else "tie"}')
    path = tmp_path / "few.csv"
    path.write_text("\n".join(lines) + "\n")
    battles_import(path)
    snapshot_elsewhere()
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{arena.url}/leaderboard/")
    for plot in ("plot-winrate", "plot-battles", "plot-votes"):
        page.wait_for_selector(f"#{plot} .main-svg", timeout=20_000)
    for plot in ("plot-winrate", "plot-battles"):
        box = page.locator(f"#{plot}").bounding_box()
        labels = page.locator(f"#{plot} .ytick text, #{plot} .xtick text")
        assert labels.count() == 2 * len(names)
        assert sorted(set(labels.all_text_contents())) == sorted(names), "no label is cut short"
        for i in range(labels.count()):
            label = labels.nth(i).bounding_box()
            assert label["x"] >= box["x"] - 1 and label["y"] + label["height"] <= box["y"] + box["height"] + 1, (
                plot, labels.nth(i).text_content(), label, box)
    for axis in ("ytick", "y2tick"):
        ticks = page.locator(f"#plot-votes .{axis} text").all_text_contents()
        assert ticks and all(t.replace(",", "").isdigit() for t in ticks), (axis, ticks)
        assert len(set(ticks)) == len(ticks), (axis, ticks)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "leaderboard-imported.png"), full_page=True)
    context.close()
