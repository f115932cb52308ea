"""What a voter sees, in a real headless Chromium against a live arena."""

from __future__ import annotations

import pytest

from arena.models import Turn, Vote
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


# Keeps the page's websockets reachable from the test, to send what a double click once sent or to drop the line.
KEEP_SOCKETS = """(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native { constructor(...args) { super(...args); window.__sockets.push(this); } };
})()"""


def frames_of(tab: Page, kind: str) -> list[dict]:
    import json

    return [f for f in map(json.loads, tab.frames) if f.get("type") == kind]


def wait_frames(tab: Page, kind: str, count: int, timeout_ms: int = 30_000) -> None:
    waited = 0
    while len(frames_of(tab, kind)) < count:
        assert waited < timeout_ms, f"no {count} {kind} frame(s); got {tab.frames[-5:]}"
        tab.page.wait_for_timeout(100)
        waited += 100


def wait_connected(tab: Page) -> None:
    tab.page.wait_for_function("() => window.__sockets && window.__sockets.some(s => s.readyState === 1)")


def assert_thanked(tab: Page, choice: str, names: set[str]) -> None:
    assert tab.page.locator(f".vote.chosen[data-vote='{choice}']").count() == 1, "the chosen vote stays highlighted"
    assert tab.page.locator(".vote.chosen").count() == 1
    if choice in ("A", "B"):
        assert "winner" in tab.page.get_attribute(f"[data-side={choice}]", "class")
    notice = tab.page.text_content("#notice")
    assert "Thanks for voting" in notice and "Both answers are in" not in notice, notice
    assert {tab.page.text_content("[data-name=A]"), tab.page.text_content("[data-name=B]")} == names
    assert all(tab.page.is_disabled(f".vote[data-vote='{v}']") for v in ("A", "B", "tie", "bothbad"))


def test_a_double_vote_or_a_reconnect_after_the_vote_keeps_the_thanks(chromium, arena, standin):
    standin_entry(standin, "ant-one", "echo", display_name="Ant One", organization="Antcorp")
    standin_entry(standin, "bee-one", "echo", display_name="Bee One", organization="Beecorp")
    tab = Page(chromium, arena.url)
    tab.context.add_init_script(KEEP_SOCKETS)
    tab.page.reload()
    wait_connected(tab)
    tab.ask("Which insect is busier?")
    tab.wait_votable()
    # What a double click did before: both votes went out before the first was answered.
    tab.page.evaluate("""() => {
      const socket = window.__sockets.at(-1);
      socket.send(JSON.stringify({type: "vote", choice: "A"}));
      socket.send(JSON.stringify({type: "vote", choice: "A"}));
    }""")
    wait_frames(tab, "voted", 1)
    wait_frames(tab, "error", 1)
    assert [f["code"] for f in frames_of(tab, "error")] == ["already_voted"], "the server kept one vote"
    wait_frames(tab, "state", 1)  # the page re-read the battle after the refusal
    tab.page.wait_for_timeout(300)
    assert_thanked(tab, "A", {"Ant One", "Bee One"})
    assert Vote.objects.count() == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-double-vote.png"), full_page=True)

    # The line drops after the vote: the page reconnects, resumes the battle and still shows the vote.
    states = len(frames_of(tab, "state"))
    tab.page.evaluate("() => window.__sockets.at(-1).close()")
    wait_frames(tab, "state", states + 1)
    tab.page.wait_for_timeout(300)
    assert_thanked(tab, "A", {"Ant One", "Bee One"})

    # A real double click on a vote button of the next battle sends one vote.
    errors_before = len(frames_of(tab, "error"))
    tab.ask("And now?")
    tab.page.wait_for_function("() => document.querySelector('[data-name=A]').textContent === ''")
    tab.wait_votable()
    tab.page.dblclick(".vote[data-vote='B']")
    wait_frames(tab, "voted", 2)
    tab.page.wait_for_timeout(300)
    assert len(frames_of(tab, "error")) == errors_before, "the second click sent nothing"
    assert_thanked(tab, "B", {"Ant One", "Bee One"})
    assert Vote.objects.count() == 2
    assert tab.errors == []
    tab.close()


def test_a_reload_mid_answer_and_after_the_vote_keeps_the_battle_and_gives_a_share_link(chromium, arena, standin):
    from arena.models import Battle

    standin_entry(standin, "snail-1", "slow", display_name="Snail One", organization="Snailcorp")
    standin_entry(standin, "slug-1", "slow", display_name="Slug One", organization="Slugcorp")
    tab = Page(chromium, arena.url)
    tab.ask("Count the ticks for me.")
    tab.page.wait_for_function(
        "() => [...document.querySelectorAll('.bubble.model.streaming')].some(b => b.textContent.includes('tick'))"
    )
    shown = tab.page.evaluate(
        "() => Math.min(...[...document.querySelectorAll('.bubble.model .markdown')].map(b => b.textContent.split('tick').length - 1))"
    )
    states_before = len(frames_of(tab, "state"))
    tab.page.reload()  # mid-answer: the slow stand-in writes 20 ticks over about 4 s
    tab.page.wait_for_function("() => document.querySelectorAll('.bubble.user').length === 2")
    wait_frames(tab, "state", states_before + 1)
    resumed = frames_of(tab, "state")[states_before]
    for side, turns in resumed["sides"].items():
        ticks = turns[0]["text"].count("tick")
        assert ticks >= shown and (turns[0]["status"] == "done" or "…" not in turns[0]["text"]), (
            f"side {side} resumed with {ticks} ticks after {shown} were shown: what streamed before is kept"
        )
    assert tab.page.text_content("[data-conversation=A] .bubble.user") == "Count the ticks for me."
    tab.wait_votable()
    for side in "AB":
        text = tab.page.text_content(f"[data-conversation={side}] .bubble.model .markdown")
        assert text.count("tick") == 20, f"the whole answer is shown once finished: {text!r}"
    assert Battle.objects.count() == 1, "the reload resumed the battle instead of losing it"
    seen = "\n".join([tab.page.content(), *tab.frames]).lower()
    for secret in ("snail one", "slug one", "snailcorp", "slugcorp", "snail-1", "slug-1"):
        assert secret not in seen, f"{secret} reached the browser before the vote"
    tab.page.keyboard.press("4")
    tab.page.wait_for_function("() => document.querySelector('[data-name=B]').textContent.length > 0")
    tab.page.reload()  # after the vote: names, the chosen vote and the thanks come back
    tab.page.wait_for_function("() => document.querySelector('[data-name=B]').textContent.length > 0")
    tab.page.wait_for_timeout(200)
    assert_thanked(tab, "B", {"Snail One", "Slug One"})
    share = tab.page.get_attribute("#share", "href")
    assert tab.page.is_visible("#share") and share.startswith("/battle/")
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-after-reload.png"), full_page=True)

    stranger = chromium.new_context()  # another browser, another session: the link is read-only and public
    page = stranger.new_page()
    response = page.goto(arena.url + share)
    assert response.status == 200
    assert page.text_content("[data-conversation=A] .bubble.user") == "Count the ticks for me."
    assert {page.text_content("[data-name=A]"), page.text_content("[data-name=B]")} == {"Snail One", "Slug One"}
    assert "winner" in page.get_attribute("[data-side=B]", "class")
    assert page.locator("#composer, .vote").count() == 0, "nothing to send or vote on a shared battle"
    page.screenshot(path=str(SCREENSHOTS / "battle-shared.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / "battle-shared-phone.png"), full_page=True)
    stranger.close()
    tab.close()


def test_a_failed_side_says_what_happened_and_its_retry_brings_the_vote_back(chromium, arena, standin):
    standin_entry(standin, "works", "echo", display_name="Works Fine", organization="Goodcorp")
    down = standin_entry(standin, "down", "fail", display_name="Down Model", organization="Badcorp")
    tab = Page(chromium, arena.url)
    tab.ask("Are you there?")
    tab.page.wait_for_selector(".bubble.model.failed .retry")
    tab.page.wait_for_function("() => document.querySelectorAll('.status.done').length === 1")
    notice = tab.page.text_content("#notice")
    assert "could not answer" in notice and "Retry" in notice and "new round" in notice, notice
    assert "answering" not in notice
    assert all(tab.page.is_disabled(f".vote[data-vote='{v}']") for v in ("A", "B", "tie", "bothbad"))
    assert tab.page.is_enabled("#send") and tab.page.text_content("#send") == "Send", "a new round is one prompt away"
    page_text = "\n".join([tab.page.content(), *tab.frames]).lower()
    for secret in ("down model", "badcorp", "works fine", "goodcorp", "127.0.0.1"):
        assert secret not in page_text
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-failed-side.png"), full_page=True)
    down.remote_model = "echo"  # the endpoint is back
    down.save()
    tab.page.click(".bubble.model.failed .retry")
    tab.wait_votable()
    assert "Both answers are in" in tab.page.text_content("#notice")
    assert tab.page.locator(".bubble.model.failed").count() == 0
    tab.close()


def test_answers_show_their_cut_mark_stop_early_and_copy(chromium, arena, standin):
    from models_hub.models import ModelEntry

    standin_entry(standin, "long-a", "echo-30", max_new_tokens=5)
    standin_entry(standin, "long-b", "echo-30", max_new_tokens=5)
    tab = Page(chromium, arena.url, permissions=["clipboard-read", "clipboard-write"])
    tab.ask("Write thirty words.")
    tab.wait_votable()
    marks = tab.page.locator(".bubble.model .cut-mark")
    assert marks.count() == 2 and all("token limit" in t for t in marks.all_text_contents())
    tab.page.click("[data-conversation=A] .bubble.model .copy")
    tab.page.wait_for_function("() => document.querySelector('[data-conversation=A] .copy').textContent.includes('Copied')")
    copied = tab.page.evaluate("() => navigator.clipboard.readText()")
    assert copied == Turn.objects.get(side__position="left").response == "word " * 5
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-cut-and-copy.png"), full_page=True)

    ModelEntry.objects.update(is_active=False)
    standin_entry(standin, "slow-a", "slow")
    standin_entry(standin, "slow-b", "slow")
    tab.page.click("#new-round")
    tab.ask("Count slowly.")
    tab.page.wait_for_function(
        "() => [...document.querySelectorAll('.bubble.model.streaming')].some(b => b.textContent.includes('tick'))"
    )
    assert tab.page.is_visible("#stop") and tab.page.is_enabled("#stop")
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-stop-button.png"), full_page=True)
    tab.page.click("#stop")
    tab.wait_votable()
    marks = tab.page.locator(".bubble.model .cut-mark").all_text_contents()
    assert marks == ["■ Stopped.", "■ Stopped."], marks
    for side in "AB":
        assert tab.page.text_content(f"[data-conversation={side}] .bubble.model .markdown").count("tick") < 20
    assert tab.page.is_hidden("#stop")
    tab.close()


def test_prompts_too_long_or_blank_get_a_message_and_keys_vote_after_sending(chromium, arena, standin):
    from arena.models import Battle

    standin_entry(standin, "key-a", "echo")
    standin_entry(standin, "key-b", "echo")
    tab = Page(chromium, arena.url)
    tab.page.fill("#prompt", "x" * 50_000)  # a paste: nothing cuts it to the limit behind the voter's back
    assert tab.page.evaluate("() => document.querySelector('#prompt').value.length") == 50_000
    assert tab.page.text_content("#prompt-count") == "50,000 / 4,000"
    tab.page.keyboard.press("Enter")
    assert "50,000 characters long; the limit is 4,000" in tab.page.text_content("#notice")
    tab.page.fill("#prompt", "     ")
    tab.page.keyboard.press("Enter")
    assert "empty or only spaces" in tab.page.text_content("#notice")
    tab.page.wait_for_timeout(300)
    assert Battle.objects.count() == 0 and not frames_of(tab, "started")
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-blank-prompt.png"), full_page=True)
    tab.ask("Pick one.")
    tab.wait_votable()
    assert tab.page.evaluate("() => document.activeElement.id") != "prompt", "focus left the prompt box on sending"
    tab.page.keyboard.press("1")  # as the button's hint says; no click, no blur first
    tab.page.wait_for_function("() => document.querySelector('[data-name=A]').textContent.length > 0")
    assert Vote.objects.get().choice == "left"
    tab.page.click("#prompt")
    tab.page.keyboard.type("12")  # in the box the keys type, they do not vote
    assert tab.page.input_value("#prompt") == "12" and Vote.objects.count() == 1
    tab.close()


def test_a_first_visit_asks_for_consent_and_the_phone_tabs_fit(chromium, arena, standin):
    from arena.models import Battle

    standin_entry(standin, "tab-a", "echo")
    standin_entry(standin, "tab-b", "echo")
    tab = Page(chromium, arena.url, consent=False, viewport={"width": 390, "height": 844}, is_mobile=True)
    failures: list[str] = []
    tab.page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    assert tab.page.is_visible("#consent") and "may be published" in tab.page.text_content("#consent")
    tab.page.screenshot(path=str(SCREENSHOTS / "battle-consent-phone.png"), full_page=True)
    tab.ask("Hello before agreeing")
    assert "accept it before your first prompt" in tab.page.text_content("#notice")
    tab.page.wait_for_timeout(300)
    assert Battle.objects.count() == 0, "no prompt leaves before consent"
    tab.page.click("#consent-agree")
    assert tab.page.is_hidden("#consent")
    tab.ask("Hello after agreeing")
    tab.wait_votable()
    tab.page.reload()
    tab.page.wait_for_selector(".bubble.user")
    assert tab.page.is_hidden("#consent"), "asked once, not on every visit"
    for link in tab.page.locator(".topbar nav a").all():
        box = link.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, f"{link.text_content()} sticks out"
        assert link.evaluate("a => a.scrollWidth <= a.clientWidth"), f"{link.text_content()} is cut"
    assert "Leaderboard" in tab.page.locator(".topbar nav").inner_text()
    assert tab.page.request.get(arena.url + "/favicon.ico").status == 200
    assert failures == [], failures
    tab.close()


def test_the_leaderboard_table_fits_a_phone(chromium, arena):
    from leaderboard.snapshots import leaderboard_snapshot_create
    from tests.leaderboard.test_leaderboard import model, record, simulate

    models = [
        model("gpt-oss-20b", display_name="GPT-OSS 20B", organization="OpenAI", license="Apache-2.0"),
        model("llama-3-1-8b", display_name="Llama 3.1 8B Instruct", organization="Meta", license="Llama 3.1"),
        model("mistral-7b", display_name="Mistral 7B Instruct", organization="Mistral AI", license="Apache-2.0"),
        model("our-moe", display_name="Our MoE 8x1B", organization="Our team", license="Internal", is_inhouse=True),
    ]
    for spec in simulate(models, 240, seed=3):
        record(spec)
    leaderboard_snapshot_create()
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(arena.url + "/leaderboard/")
    page.wait_for_selector(".lb-table")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
    card = page.locator(".lb-table-card")
    assert card.evaluate("c => c.scrollWidth <= c.clientWidth"), "the table is not clipped inside its card"
    for header in ("Rank (UB)", "Model", "Score", "95% CI", "Votes"):
        assert page.locator(".lb-table th", has_text=header).is_visible(), f"{header} is shown on a phone"
    assert "Our MoE 8x1B" in page.locator(".lb-table").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "leaderboard-phone.png"), full_page=True)
    context.close()
