"""Equal pace as a voter sees it, in a real headless Chromium against a live arena whose reading pace is slow (5
characters a second), so that "Show all now" has something to show: a fast model (`echo-20`, "word " x20 at once)
against a slow one (`slow`, "tick " x20 over about four seconds)."""

from __future__ import annotations

import json

import pytest

from tests.browser import SCREENSHOTS, LiveArena, Page
from tests.voters import standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SHOWN = """() => ['A', 'B'].map(side => {
  const body = document.querySelector(`[data-conversation=${side}] .bubble.model .markdown`);
  return [body ? body.textContent.length : 0, document.querySelector(`[data-status=${side}]`).textContent];
})"""


@pytest.fixture
def slow_paced_arena(tmp_path):
    live = LiveArena(tmp_path / "daphne.log", ARENA_PACE_CHARS_PER_SECOND="5", ARENA_PACE_TICK_MS="200").start()
    yield live
    live.stop()


def test_both_answers_finish_together_and_show_all_lifts_the_pace(chromium, slow_paced_arena, standin):
    standin_entry(standin, "hare", "echo-20", display_name="Hare", organization="Fastcorp")
    standin_entry(standin, "tortoise", "slow", display_name="Tortoise", organization="Slowcorp")
    tab = Page(chromium, slow_paced_arena.url)
    tab.ask("Race me.")
    tab.page.wait_for_selector("#show-all:not([hidden])")
    tab.page.wait_for_function(f"() => ({SHOWN})().every(([length]) => length > 0)")
    (a_length, a_status), (b_length, b_status) = tab.page.evaluate(SHOWN)
    assert a_status == b_status == "writing…", "the fast answer, long written, is not shown as done"
    assert max(a_length, b_length) < 40 and tab.page.is_disabled(".vote[data-vote='A']")
    tab.page.click("#show-all")
    # At 5 characters a second, 40 shown while both still write is reachable only with the pace lifted.
    tab.page.wait_for_function(f"() => ({SHOWN})().every(([length, status]) => length >= 40 && status === 'writing…')")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-equal-pace.png"), full_page=True)
    tab.wait_votable()
    assert [s for _, s in tab.page.evaluate(SHOWN)] == ["✓ done", "✓ done"]
    frames = [json.loads(f) for f in tab.frames]
    kinds = [f["type"] for f in frames if f["type"] in ("token", "turn")]
    assert kinds[-2:] == ["turn", "turn"] and "turn" not in kinds[:-2], "both ends came together, last"
    texts = {tab.page.text_content(f"[data-conversation={s}] .bubble.model .markdown").strip() for s in "AB"}
    assert texts == {("word " * 20).strip(), ("tick " * 20).strip()}
    assert tab.page.is_hidden("#show-all")
    assert not tab.errors
    tab.close()
