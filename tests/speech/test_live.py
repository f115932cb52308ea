"""What a bot tries on the voice arena through the real daphne, with the real espeak-ng voices: a battle without
the proof of work or with a blocklisted text, a vote without listening, and telling the voices apart before the
vote by their sizes, their lengths or their failure texts."""

from __future__ import annotations

import io
import time
import wave
from datetime import timedelta

import httpx
import pytest
from django.db.models import F

from arena.models import Battle, Turn, Vote
from inference.speech import NOT_AUDIO
from models_hub.models import ModelEntry
from models_hub.speech_defaults import default_voices_seed
from speech.models import SpeechClip
from speech.selectors import VOICE_FAILED
from trust.pow import pow_solve

from .conftest import BLOCKED_WORD, endpoint_voice

pytestmark = pytest.mark.django_db(transaction=True)
TEXT = "Could you tell me the way to the nearest train station?"


class Voter:
    """One browser-less client of the live arena with its session and CSRF cookie."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=30)
        assert self.http.get("/speech/").status_code == 200

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        response = self.http.post(path, json=body, headers={"X-CSRFToken": self.http.cookies["csrftoken"]})
        return response.status_code, response.json()

    def prove(self) -> None:
        task = self.http.get("/trust/proof/").json()
        assert task["required"]
        assert self.post("/trust/proof/", {"nonce": pow_solve(task["challenge"], task["bits"])})[0] == 200

    def battle(self, text: str = TEXT) -> dict:
        status, state = self.post("/speech/battles/", {"text": text})
        assert status == 201, state
        deadline = time.monotonic() + 60
        while not all(s["status"] in ("done", "failed") for s in state["sides"].values()):
            assert time.monotonic() < deadline, "the voices did not finish"
            time.sleep(0.2)
            state = self.http.get(f"/speech/battles/{state['battle']}/").json()
        return state

    def vote(self, state: dict) -> tuple[int, dict]:
        return self.post(f"/speech/battles/{state['battle']}/vote/", {"choice": "left"})


def test_a_voice_battle_passes_the_trust_gate_and_tells_the_voter_nothing_before_a_heard_vote(
    speech_arena, speech_standin,
):
    # Tried through daphne: a voice battle before the session's proof of work, then a blocklisted text; then, on
    # real battles, a vote right after reading only the clips' headers, after a 1 KiB range of each, and right
    # after reading both in full; the sizes and lengths of both clips of three battles; and last a battle
    # between an espeak voice that does not exist and an OpenAI-compatible endpoint that answers HTML, the only
    # two voices left drawable, each engine failing for its own reason.
    default_voices_seed(log=lambda _: None)
    bot = Voter(speech_arena.url)
    status, refused = bot.post("/speech/battles/", {"text": TEXT})
    assert (status, refused["error"]["code"]) == (403, "proof_required") and refused["error"]["message"]
    bot.prove()
    status, refused = bot.post("/speech/battles/", {"text": f"Please say {BLOCKED_WORD} twice."})
    assert (status, refused["error"]["code"]) == (422, "prompt_refused") and refused["error"]["message"]
    assert not Battle.objects.exists(), "a refused text leaves no battle behind"

    headers_only = bot.battle()
    for label in "AB":
        with bot.http.stream("GET", headers_only["sides"][label]["audio"]) as response:
            assert response.status_code == 200  # the body is never read: the connection closes here
    # Daphne takes a whole small body from the application at once, before the client's close arrives, so the
    # clips count as delivered here; the vote is refused because their duration has not passed since.
    status, refused = bot.vote(headers_only)
    assert status == 409 and refused["error"]["code"] in ("not_played", "not_listened"), refused
    assert not Battle.objects.get(public_id=headers_only["battle"]).voted

    state = bot.battle()
    clips = SpeechClip.objects.filter(turn__side__battle__public_id=state["battle"])
    for label in "AB":
        part = bot.http.get(state["sides"][label]["audio"], headers={"Range": "bytes=0-1023"})
        assert part.status_code == 206 and len(part.content) == 1024
    status, refused = bot.vote(state)
    assert (status, refused["error"]["code"]) == (409, "not_played"), "a range is not the clip"
    assert not clips.filter(delivered_at__isnull=False).exists()

    for battle in (state, bot.battle(), bot.battle()):
        lengths, durations = set(), set()
        for label in "AB":
            response = bot.http.get(battle["sides"][label]["audio"])
            assert response.status_code == 200
            lengths |= {int(response.headers["Content-Length"]), len(response.content)}
            with wave.open(io.BytesIO(response.content)) as reader:
                durations.add(reader.getnframes() / reader.getframerate())
        assert len(lengths) == 1 and len(durations) == 1, (lengths, durations)
    assert clips.filter(delivered_at__isnull=False).count() == 2
    status, refused = bot.vote(state)
    assert (status, refused["error"]["code"]) == (409, "not_listened"), "delivered, but not yet heard out"
    assert not Vote.objects.exists()
    clips.update(delivered_at=F("delivered_at") - timedelta(hours=1))
    status, voted = bot.vote(state)
    assert status == 200 and voted["voted"] == "left" and voted["models"]

    ModelEntry.objects.filter(modality="speech").update(is_active=False)
    ModelEntry.objects.create(slug="broken-espeak", display_name="Broken espeak", provider="espeak", modality="speech",
                              voice="xx-no-such-voice")
    endpoint_voice(speech_standin, "broken-tts", "html", display_name="Broken TTS")
    state = bot.battle()
    assert [(s["status"], s["error"]) for s in state["sides"].values()] == [("failed", VOICE_FAILED)] * 2
    reasons = {Turn.objects.get(side__model__slug=slug).error for slug in ("broken-espeak", "broken-tts")}
    assert len(reasons) == 2 and NOT_AUDIO in reasons, "the engines did fail differently; staff see how"
