"""What a voter sees, in a real headless Chromium against a live arena."""

from __future__ import annotations

import pytest

from arena.models import Vote
from tests.browser import SCREENSHOTS, Page

from tests.voters import standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_voter_plays_a_battle_to_the_reveal_with_the_keyboard(chromium, arena, standin):
    left = standin_entry(standin, "tortoise-7b", "slow", display_name="Tortoise 7B", organization="Slowcorp")
    right = standin_entry(standin, "hare-7b", "slow", display_name="Hare 7B", organization="Fastcorp")
    tab = Page(chromium, arena.url)
    html_before = tab.page.content()
    tab.ask("Tell me a story about patience.")
    tab.page.wait_for_function(
        "() => [...document.querySelectorAll('.bubble.model.streaming')].some(b => b.textContent.includes('tick'))"
    )
    assert tab.page.is_disabled(".vote[data-vote='A']"), "votes stay closed while the answers stream"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-streaming.png"), full_page=True)
    tab.wait_votable()
    seen_before_vote = "\n".join([html_before, tab.page.content(), *tab.frames])
    for secret in (left.display_name, left.slug, left.organization, right.display_name, right.slug, right.organization, "tortoise", "hare-"):
        assert secret.lower() not in seen_before_vote.lower(), f"{secret} reached the browser before the vote"
    tab.page.evaluate("() => document.activeElement.blur()")  # keys go to the page, not the prompt box
    tab.page.keyboard.press("4")  # B is better
    tab.page.wait_for_function("() => document.querySelector('[data-name=B]').textContent.length > 0")
    names = {tab.page.text_content("[data-name=A]"), tab.page.text_content("[data-name=B]")}
    assert names == {"Tortoise 7B", "Hare 7B"}
    assert tab.page.is_disabled(".vote[data-vote='A']"), "votes close after the vote"
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-revealed.png"), full_page=True)
    vote = Vote.objects.select_related("battle").get()
    assert vote.choice == "right" and vote.battle.mode == "anonymous"
    tab.close()


def test_a_model_answer_with_a_script_tag_does_not_run(chromium, arena, standin):
    standin_entry(standin, "evil-a", "script")
    standin_entry(standin, "evil-b", "script")
    tab = Page(chromium, arena.url)
    tab.ask("Say something dangerous")
    tab.wait_votable()
    assert tab.page.evaluate("() => window.__pwned") is None
    assert tab.page.locator(".bubble.model script").count() == 0
    assert tab.page.locator(".bubble.model img[onerror]").count() == 0
    assert "<script>window.__pwned = 1</script>" in tab.page.text_content(".bubble.model")
    assert tab.page.locator(".bubble.model strong").count() >= 1, "markdown still renders"
    tab.close()


def test_the_battle_page_fits_a_phone_screen(chromium, arena, standin):
    standin_entry(standin, "small-a", "echo")
    standin_entry(standin, "small-b", "echo")
    tab = Page(chromium, arena.url, viewport={"width": 390, "height": 844}, is_mobile=True)
    tab.ask("Hi from a phone")
    tab.wait_votable()
    width = tab.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, "no sideways scrolling on a phone"
    boxes = [tab.page.locator(f"[data-side={s}]").bounding_box() for s in "AB"]
    assert boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"] - 1, "sides stack on a narrow screen"
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-phone.png"), full_page=True)
    tab.close()


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the first test to ask for the default models builds them
def test_a_voter_plays_a_battle_between_real_small_models(chromium, arena, built_models, settings):
    from models_hub.builders import default_models_seed
    from models_hub.models import ModelEntry

    default_models_seed(models_dir=settings.ARENA_MODELS_DIR, build=False, log=lambda message: None)
    ModelEntry.objects.update(max_new_tokens=24, temperature=0.0)
    entries = list(ModelEntry.objects.all())
    assert len(entries) == 3
    tab = Page(chromium, arena.url)
    html_before = tab.page.content()
    tab.ask("Write one sentence about the sea.")
    tab.wait_votable(timeout=240_000)
    answers = [tab.page.text_content(f"[data-conversation={side}] .bubble.model") for side in "AB"]
    assert all(answer and answer.strip() for answer in answers), answers
    seen = "\n".join([html_before, tab.page.content(), *tab.frames]).lower()
    for entry in entries:
        for secret in (entry.display_name, entry.slug, entry.codename, entry.organization):
            if secret:
                assert secret.lower() not in seen, f"{secret} reached the browser before the vote"
    tab.page.evaluate("() => document.activeElement.blur()")
    tab.page.keyboard.press("2")  # tie
    tab.page.wait_for_function("() => document.querySelector('[data-name=A]').textContent.length > 0")
    shown = {tab.page.text_content("[data-name=A]"), tab.page.text_content("[data-name=B]")}
    assert shown <= {e.public_name for e in entries} and len(shown) == 2
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-real-models.png"), full_page=True)
    vote = Vote.objects.select_related("battle").get()
    assert vote.choice == "tie"
    turns = list(vote.battle.sides.all())
    assert all(t.status == "done" and t.output_tokens for side in turns for t in side.turns.all())
    tab.close()
