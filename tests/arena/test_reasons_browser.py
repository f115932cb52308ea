"""Reasons with the vote, as a voter sees them in a real headless Chromium: nothing before the vote, tags for each
answer after it, saved and replaceable."""

from __future__ import annotations

import pytest

from arena.models import Vote
from tests.browser import SCREENSHOTS, Page
from tests.voters import standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_voter_tags_each_answer_after_the_vote_and_can_change_them(chromium, arena, standin):
    standin_entry(standin, "left-7b", "echo")
    standin_entry(standin, "right-7b", "echo")
    tab = Page(chromium, arena.url)
    tab.ask("Explain rainbows in one line.")
    tab.wait_votable()
    assert tab.page.locator("#reasons").count() == 0, "no reasons before the vote"
    tab.page.click(".vote[data-vote='A']")
    tab.page.wait_for_selector("#reasons")
    panel = tab.page.locator("#reasons")
    assert "Why?" in panel.inner_text() and panel.locator(".reason").count() == 16  # eight tags for each answer
    panel.locator("[data-reasons-side=A] [data-reason=correct]").click()
    panel.locator("[data-reasons-side=A] [data-reason=clear]").click()
    panel.locator("[data-reasons-side=B] [data-reason=too_long]").click()
    tab.page.click("#reasons-send")
    tab.page.wait_for_function("() => document.querySelector('#reasons-status').textContent.includes('saved')")
    assert Vote.objects.get().reasons == {"left": ["correct", "clear"], "right": ["too_long"]}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-reasons.png"), full_page=True)
    # A change of mind replaces them; the vote stays as it was.
    panel.locator("[data-reasons-side=B] [data-reason=too_long]").click()
    panel.locator("[data-reasons-side=B] [data-reason=wrong]").click()
    tab.page.click("#reasons-send")
    tab.page.wait_for_function("() => document.querySelector('#reasons-status').textContent.includes('saved')")
    vote = Vote.objects.get()
    assert vote.reasons == {"left": ["correct", "clear"], "right": ["wrong"]} and vote.choice == "left"
    assert tab.errors == []
    tab.close()
