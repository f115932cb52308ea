"""A voice battle in a real headless Chromium against a live arena (proof of work on, solved by the page): both
clips play to the end (muted), the votes open only then and the server takes the vote (it waits for both clips
delivered in full and their duration), the vote reveals the names, and nothing the browser received named a model
before the vote."""

from __future__ import annotations

import pytest

from arena.models import Vote
from models_hub.models import ModelEntry
from models_hub.speech_defaults import default_voices_seed
from tests.browser import SCREENSHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def play(page, label: str) -> None:
    # Headless Chromium plays muted audio without a user gesture; currentTime moving past 0 means it started.
    page.evaluate(f"() => {{ const a = document.querySelector('[data-audio={label}]'); a.muted = true; return a.play(); }}")
    page.wait_for_function(f"() => document.querySelector('[data-audio={label}]').currentTime > 0", timeout=15_000)


def played_out(page, label: str) -> None:
    page.wait_for_function(f"() => document.querySelector('[data-audio={label}]').ended", timeout=30_000)


def test_a_voter_plays_both_voices_votes_and_sees_the_reveal(chromium, speech_arena, tmp_path):
    voices = [entry for entry, _ in default_voices_seed(log=lambda _: None, neural=False)]
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    received: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: received.append(
        f"{r.url}\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        + ("\n" + r.text() if "/speech/battles/" in r.url and not r.url.endswith(".wav") else "")
    ))
    page.goto(f"{speech_arena.url}/speech/")
    page.click("#examples button >> nth=0")
    page.wait_for_function(
        "() => ['A', 'B'].every(l => document.querySelector(`[data-audio=${l}]`).getAttribute('src'))", timeout=60_000
    )
    assert page.is_disabled(".vote[data-vote='left']"), "votes stay closed until both voices were played"
    play(page, "A")
    play(page, "B")  # both at once: the test waits one clip's length, not two
    assert page.is_disabled(".vote[data-vote='left']"), "voices still playing are not yet heard"
    played_out(page, "A")
    played_out(page, "B")
    page.wait_for_selector(".vote[data-vote='right']:not([disabled])", timeout=15_000)
    seen = "\n".join([page.content(), *received]).lower()
    for entry in voices:
        for secret in (entry.display_name, entry.slug, entry.voice, "espeak"):
            assert secret.lower() not in seen, f"{secret} reached the browser before the vote"
    assert any(r.split("\n", 1)[0].endswith("/A.wav") for r in received), "the clip came from its battle-scoped URL"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "speech-battle-votable.png"), full_page=True)

    page.click(".vote[data-vote='right']")
    page.wait_for_function("() => document.querySelector('[data-name=B]').textContent.length > 0", timeout=15_000)
    names = {page.text_content("[data-name=A]"), page.text_content("[data-name=B]")}
    assert names <= {v.display_name for v in voices} and len(names) == 2
    assert "real time" in page.text_content("[data-figures=A]")
    page.screenshot(path=str(SCREENSHOTS / "speech-battle-revealed.png"), full_page=True)
    vote = Vote.objects.get()
    assert vote.choice == "right"
    assert errors == []
    context.close()


def test_an_empty_text_gets_a_clear_message_in_the_page(chromium, speech_arena):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{speech_arena.url}/speech/")
    page.focus("#speech-text")
    page.keyboard.press("Enter")
    # The page says it is synthesising while the request is out; the server's refusal replaces that.
    page.wait_for_function("() => document.querySelector('#notice').classList.contains('error')", timeout=20_000)
    assert "Type a text" in page.text_content("#notice")
    assert page.get_attribute("#notice", "class") == "notice error"
    context.close()


def play_through(page, label: str) -> None:
    # The whole clip, to its end: a voice page may open the votes only once both were heard through.
    play(page, label)
    page.wait_for_function(f"() => document.querySelector('[data-audio={label}]').ended", timeout=60_000)


def test_two_neural_voices_battle_in_the_page_and_the_vote_reveals_them(chromium, speech_arena):
    voices = [entry for entry, _ in default_voices_seed(log=lambda _: None, espeak=False)]
    ModelEntry.objects.filter(slug="kokoro-82m-jm-kumo").update(is_active=False)  # one Piper, one Kokoro voice
    voices = [v for v in voices if v.slug != "kokoro-82m-jm-kumo"]
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    received: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: received.append(
        f"{r.url}\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        + ("\n" + r.text() if "/speech/battles/" in r.url and not r.url.endswith(".wav") else "")
    ))
    clips: list[bytes] = []
    page.on("response", lambda r: clips.append(r.body()) if r.url.endswith(".wav") else None)
    page.goto(f"{speech_arena.url}/speech/")
    page.click("#examples button >> nth=1")
    page.wait_for_function(
        "() => ['A', 'B'].every(l => document.querySelector(`[data-audio=${l}]`).getAttribute('src'))", timeout=120_000
    )
    play_through(page, "A")
    play_through(page, "B")
    page.wait_for_selector(".vote[data-vote='left']:not([disabled])", timeout=15_000)
    seen = "\n".join([page.content(), *received]).lower()
    for entry in voices:
        for secret in (entry.display_name, entry.slug, entry.voice, entry.organization, "piper", "kokoro", "onnx"):
            assert secret.lower() not in seen, f"{secret} reached the browser before the vote"
    for clip in clips:
        assert clip[36:40] == b"data", "a clip holds only the fmt and data chunks"
    page.click(".vote[data-vote='left']")
    page.wait_for_function("() => document.querySelector('[data-name=A]').textContent.length > 0", timeout=15_000)
    names = {page.text_content("[data-name=A]"), page.text_content("[data-name=B]")}
    assert names == {v.display_name for v in voices}
    assert Vote.objects.get().choice == "left"
    assert errors == []
    context.close()
