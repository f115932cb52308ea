"""Voice battles over HTTP, with real espeak-ng voices and jobs on the embedded dispatcher's threads: the flow to
the reveal, what an audio URL, its headers, its size and its length give away before the vote, the listening a vote
waits for, the shared battle rate limit, modalities kept apart, and bad input."""

from __future__ import annotations

import io
import json
import wave
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import Client

from arena.models import Battle, Side, Turn, Vote
from arena import services
from arena.services import BattleError, battle_create
from inference.dispatch import inprocess_idle
from inference.speech import NOT_AUDIO, SAMPLE_RATE
from leaderboard.snapshots import leaderboard_battles
from models_hub.models import ModelEntry
from models_hub.speech_defaults import default_voices_seed
from speech.leaderboard import speech_board, speech_snapshot_create
from speech.models import SpeechClip, SpeechVoiceCheck, clip_storage
from speech.selectors import VOICE_FAILED
from speech.services import speech_battle_create
from tests.voters import standin_entry

from .conftest import endpoint_voice

pytestmark = pytest.mark.django_db(transaction=True)
TEXT = "Please remember to bring your umbrella tomorrow."


@pytest.fixture
def voices(db, inprocess, clip_dir):
    inprocess.ARENA_RATE_LIMIT_BATTLES = 0
    return [entry for entry, _ in default_voices_seed(log=lambda _: None, neural=False)]


def voter() -> Client:
    client = Client()
    client.get("/speech/")  # the page gives the voter a session and a CSRF cookie
    return client


def post(client: Client, url: str, body: object) -> tuple[int, dict]:
    response = client.post(url, data=json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def finished(client: Client, battle_id: str) -> dict:
    assert inprocess_idle(60), "the synthesis jobs did not finish"
    return client.get(f"/speech/battles/{battle_id}/").json()


def fetch(client: Client, url: str, **headers) -> tuple[object, bytes]:
    """GET `url` and read its body to the end (a streamed clip is delivered only once read in full)."""
    response = client.get(url, **headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def listen(client: Client, state: dict) -> None:
    """What a page that plays both clips to the end does: fetch both in full, then let their duration pass (the
    first asks moved back an hour rather than a sleep)."""
    for label in "AB":
        fetch(client, state["sides"][label]["audio"])
    SpeechClip.objects.filter(turn__side__battle__public_id=state["battle"]).update(
        delivered_at=F("delivered_at") - timedelta(hours=1)
    )


def secrets_of(entries) -> list[str]:
    names = []
    for e in entries:
        names += [e.display_name, e.slug, e.voice, e.organization, e.remote_model]
    return [n for n in names if n] + ["espeak"]


def test_a_voter_listens_to_both_voices_votes_and_sees_the_names(voices):
    client = voter()
    status, state = post(client, "/speech/battles/", {"text": TEXT})
    assert status == 201 and state["models"] is None and state["text"] == TEXT
    battle_id = state["battle"]
    state = finished(client, battle_id)
    assert {s["status"] for s in state["sides"].values()} == {"done"}
    assert state["sides"]["A"]["audio"] == f"/speech/battles/{battle_id}/A.wav"

    status, refused = post(client, f"/speech/battles/{battle_id}/vote/", {"choice": "left"})
    assert status == 409 and refused["error"]["code"] == "not_played", "no vote before both voices were played"
    fetch(client, state["sides"]["A"]["audio"])
    status, refused = post(client, f"/speech/battles/{battle_id}/vote/", {"choice": "left"})
    assert status == 409 and refused["error"]["code"] == "not_played", "one voice played is not enough"
    listen(client, state)

    status, state = post(client, f"/speech/battles/{battle_id}/vote/", {"choice": "right"})
    assert status == 200 and state["voted"] == "right"
    drawn = {s.model.display_name for s in Side.objects.filter(battle__public_id=battle_id).select_related("model")}
    assert set(state["models"].values()) == drawn and drawn <= {v.display_name for v in voices}
    for label in "AB":
        figures = state["figures"][label]
        assert figures["audio_seconds"] > 1 and figures["generation_seconds"] > 0 and figures["real_time_factor"] > 0
    status, again = post(client, f"/speech/battles/{battle_id}/vote/", {"choice": "left"})
    assert status == 409 and again["error"]["code"] == "already_voted"
    assert Vote.objects.get(battle__public_id=battle_id).choice == "right"


def test_an_audio_file_its_url_and_headers_reveal_no_model_before_the_vote(voices):
    client = voter()
    _, state = post(client, "/speech/battles/", {"text": TEXT})
    state = finished(client, state["battle"])
    drawn = [s.model for s in Side.objects.filter(battle__public_id=state["battle"]).select_related("model")]
    formats = set()
    for label in "AB":
        url = state["sides"][label]["audio"]
        response, content = fetch(client, url)
        assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
        assert response["Content-Disposition"] == f'inline; filename="{label}.wav"'
        seen = "\n".join([url, json.dumps(state), *(f"{k}: {v}" for k, v in response.headers.items())]).lower()
        body = content.lower()
        for secret in secrets_of(drawn):
            assert secret.lower() not in seen, f"{secret} is in the URL, state or headers"
            assert secret.lower().encode() not in body, f"{secret} is in the audio file"
        with wave.open(io.BytesIO(content)) as reader:
            formats.add((reader.getnchannels(), reader.getsampwidth(), reader.getframerate()))
    assert formats == {(1, 2, SAMPLE_RATE)}, "both clips in one format"
    for clip in SpeechClip.objects.all():
        for secret in secrets_of(drawn):
            assert secret.lower() not in clip.audio.name.lower(), "the stored file name names no model"


def test_only_the_owner_hears_a_battle_and_text_battles_are_not_voice_battles(voices, standin):
    owner, stranger = voter(), voter()
    _, state = post(owner, "/speech/battles/", {"text": TEXT})
    finished(owner, state["battle"])
    assert stranger.get(f"/speech/battles/{state['battle']}/A.wav").status_code == 404
    assert stranger.get(f"/speech/battles/{state['battle']}/").status_code == 404
    assert owner.get(f"/speech/battles/{state['battle']}/C.wav").status_code == 404
    standin_entry(standin, "text-a", "echo")
    standin_entry(standin, "text-b", "echo")
    text_battle = battle_create(session_key=owner.session.session_key, ip="127.0.0.1", mode="anonymous", prompt="hi")
    assert owner.get(f"/speech/battles/{text_battle.public_id}/").status_code == 404
    status, answer = post(owner, f"/speech/battles/{text_battle.public_id}/vote/", {"choice": "left"})
    assert status == 404 and answer["error"]["code"] == "not_found"


def test_the_text_battle_path_refuses_a_voice_battle_so_no_vote_skips_the_listening(voices):
    # Tried, as the voice battle's own session, everything the text websocket does with a battle id: resume,
    # vote (which would skip "listen to both voices first"), regenerate, continue and stop.
    client = voter()
    _, state = post(client, "/speech/battles/", {"text": TEXT})
    finished(client, state["battle"])
    owner = dict(public_id=state["battle"], session_key=client.session.session_key)
    attempts = sorted(Turn.objects.filter(side__battle__public_id=state["battle"]).values_list("id", "attempt"))
    calls = {
        "resume": lambda: services.battle_resume(**owner),
        "vote": lambda: services.vote_record(**owner, ip="127.0.0.1", choice="left"),
        "regenerate": lambda: services.battle_regenerate(**owner, ip="127.0.0.1"),
        "continue": lambda: services.battle_continue(**owner, ip="127.0.0.1", prompt="And then?"),
        "stop": lambda: services.battle_stop(**owner),
    }
    for name, call in calls.items():
        with pytest.raises(BattleError) as refused:
            call()
        assert refused.value.code == "not_found" and refused.value.status == 404, name
    assert not Vote.objects.exists()
    assert sorted(Turn.objects.filter(side__battle__public_id=state["battle"]).values_list("id", "attempt")) == attempts
    # The voice path itself still knows the battle.
    assert client.get(f"/speech/battles/{state['battle']}/").status_code == 200


def test_a_text_battle_and_a_voice_battle_never_mix_modalities(voices, standin):
    text_models = [standin_entry(standin, f"text-{i}", "echo") for i in range(3)]
    # Tried: 40 anonymous battles of each kind with three text models and four voices all active and weighted.
    for _ in range(40):
        text = battle_create(session_key="s1", ip="10.0.0.1", mode="anonymous", prompt="Hello")
        assert {s.model.modality for s in text.sides.select_related("model")} == {"text"}
        voice = speech_battle_create(session_key="s1", ip="10.0.0.1", text=TEXT)
        assert {s.model.modality for s in voice.sides.select_related("model")} == {"speech"}
    with pytest.raises(BattleError) as caught:
        battle_create(session_key="s1", ip="10.0.0.1", mode="named", prompt="Hi", models=[voices[0].slug, text_models[0].slug])
    assert caught.value.code == "unknown_model", "a voice cannot be picked by name for a text battle"
    ModelEntry.objects.filter(modality="speech").exclude(pk=voices[0].pk).update(is_active=False)
    with pytest.raises(BattleError) as caught:
        speech_battle_create(session_key="s1", ip="10.0.0.1", text=TEXT)
    assert caught.value.code == "no_models", "one voice and many text models make no voice battle"
    assert inprocess_idle(120)


def test_voice_votes_make_their_own_board_and_stay_off_the_text_board(voices):
    client = voter()
    for choice in ("left", "right", "tie"):
        _, state = post(client, "/speech/battles/", {"text": TEXT})
        state = finished(client, state["battle"])
        listen(client, state)
        assert post(client, f"/speech/battles/{state['battle']}/vote/", {"choice": choice})[0] == 200
    assert inprocess_idle(60)
    assert not leaderboard_battles().exists(), "the text leaderboard reads no voice battle"
    speech_snapshot_create()  # after the jobs the votes queued: nothing new to fit
    from speech.leaderboard import speech_snapshot_latest

    snapshot = speech_snapshot_latest()
    assert snapshot is not None and snapshot.votes_used == 3
    board = speech_board(snapshot)
    drawn = set(Side.objects.filter(battle__vote__isnull=False).values_list("model__slug", flat=True))
    # Three battles among four voices may not connect them all: a pair drawn apart from the rest is listed as
    # left out (disconnected), never ranked against voices it did not meet.
    slugs = dict(ModelEntry.objects.values_list("pk", "slug"))
    left_out = {slugs[o["model_id"]] for o in board.left_out}
    assert board.rows and {row["slug"] for row in board.rows} | left_out == drawn
    assert all(o["reason"] == "disconnected" for o in board.left_out)
    for row in board.rows:
        assert row["clips"] >= 1 and row["audio_seconds"] > 1 and row["real_time_factor"] > 0
        # espeak-ng answers all at once: its first audio is the whole generation, on this machine's CPU.
        assert row["first_audio_seconds"] == pytest.approx(row["generation_seconds"]) and row["device"] == "cpu"
        assert row["word_error_rate"] is None, "no intelligibility check yet"
    checked = ModelEntry.objects.get(slug=board.rows[0]["slug"])
    SpeechVoiceCheck.objects.create(model=checked, word_error_rate=0.5, words=40, texts=4)
    SpeechVoiceCheck.objects.create(model=checked, word_error_rate=0.025, words=40, texts=4)
    rows = {row["slug"]: row for row in speech_board(snapshot).rows}
    assert rows[checked.slug]["word_error_rate"] == 0.025, "the board shows the newest check"
    page = client.get("/speech/leaderboard/").content.decode()
    assert "Real-time factor" in page and board.rows[0]["name"] in page
    assert "First audio" in page and "WER (en)" in page and "0.025" in page


@pytest.mark.parametrize("body,status,code", [
    ({"text": ""}, 400, "empty_text"),
    ({"text": "   \n  "}, 400, "empty_text"),
    ({"text": "x" * 501}, 413, "text_too_long"),
    ({"text": 42}, 400, "invalid_text"),
    ({}, 400, "invalid_text"),
])
def test_bad_text_gets_a_clear_message_and_saves_nothing(voices, body, status, code):
    client = voter()
    got_status, answer = post(client, "/speech/battles/", body)
    assert (got_status, answer["error"]["code"]) == (status, code)
    assert answer["error"]["message"]
    assert not Battle.objects.exists() and not Turn.objects.exists()


def test_a_request_that_is_not_json_is_refused(voices):
    client = voter()
    response = client.post("/speech/battles/", data="text=hello", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert not Battle.objects.exists()


@pytest.mark.parametrize("behaviour,reason", [
    ("html", NOT_AUDIO),
    ("hang", "The model's server took too long to answer."),
])
def test_an_endpoint_sending_no_audio_fails_its_side_and_keeps_nothing(speech_standin, inprocess, clip_dir, behaviour, reason):
    inprocess.ARENA_OPENAI_READ_TIMEOUT = 1.0
    endpoint_voice(speech_standin, "broken-tts", behaviour, display_name="Broken TTS")
    endpoint_voice(speech_standin, "good-tts", "wav", display_name="Good TTS")
    client = voter()
    _, state = post(client, "/speech/battles/", {"text": TEXT})
    state = finished(client, state["battle"])
    sides = list(state["sides"].values())
    failed = [s for s in sides if s["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == VOICE_FAILED and failed[0]["audio"] is None
    assert [s["status"] for s in sides if s not in failed] == ["done"]
    assert [s["audio"] for s in sides if s not in failed] == [None], "a clip with no rival to be padded to stays unheard"
    broken = Turn.objects.get(side__model__slug="broken-tts")
    assert broken.error == reason, "staff keep the real reason"
    assert not SpeechClip.objects.filter(turn=broken).exists(), "a failed side has no clip"
    assert len(list(clip_dir.glob("clips/*.wav"))) == 1, "only the good side's file was stored"
    for label in "AB":
        response = client.get(f"/speech/battles/{state['battle']}/{label}.wav")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_ready"
    status, answer = post(client, f"/speech/battles/{state['battle']}/vote/", {"choice": "left"})
    assert status == 409 and answer["error"]["code"] == "side_failed"
    assert not Vote.objects.exists()


def test_deleting_a_battle_deletes_its_clip_files(voices, clip_dir):
    client = voter()
    _, state = post(client, "/speech/battles/", {"text": TEXT})
    finished(client, state["battle"])
    assert len(list(clip_dir.glob("clips/*.wav"))) == 2
    Battle.objects.filter(public_id=state["battle"]).delete()
    assert list(clip_dir.glob("clips/*.wav")) == []


def test_voice_battles_are_exported_with_their_modality_and_make_no_preference_pairs(voices, standin):
    from leaderboard.exports import battle_records, preference_pairs

    client = voter()
    _, state = post(client, "/speech/battles/", {"text": TEXT})
    state = finished(client, state["battle"])
    listen(client, state)
    assert post(client, f"/speech/battles/{state['battle']}/vote/", {"choice": "left"})[0] == 200
    records = list(battle_records())
    assert [(r["question_id"], r["modality"]) for r in records] == [(state["battle"], "speech")]
    assert records[0]["conversation_a"][0] == {"role": "user", "content": TEXT}
    assert list(preference_pairs(iter(records))) == [], "a voice vote is no text preference"


def test_a_vote_waits_for_both_clips_in_full_and_for_their_duration(voices):
    # Tried, one after the other on one battle: a vote after asking for both clips without reading a byte of the
    # bodies, after reading a 100-byte range of each, after reading A in full only, after reading both in full at
    # once, and after half the clips' duration; only a vote once their whole duration had passed since the asks
    # counts. The times are the stored asks moved back, not sleeps.
    client = voter()
    _, state = post(client, "/speech/battles/", {"text": TEXT})
    state = finished(client, state["battle"])
    battle_id = state["battle"]
    clips = SpeechClip.objects.filter(turn__side__battle__public_id=battle_id)

    def vote() -> tuple[int, dict]:
        return post(client, f"/speech/battles/{battle_id}/vote/", {"choice": "left"})

    for label in "AB":
        headers_only = client.get(state["sides"][label]["audio"])
        assert headers_only.status_code == 200 and int(headers_only["Content-Length"]) > 1000
    status, refused = vote()
    assert (status, refused["error"]["code"]) == (409, "not_played"), "headers alone are no delivery"
    assert refused["error"]["message"] == "Play both voices to the end before voting."

    for label in "AB":
        response, body = fetch(client, state["sides"][label]["audio"], HTTP_RANGE="bytes=0-99")
        assert response.status_code == 206 and len(body) == 100
        assert response["Content-Range"] == f"bytes 0-99/{headers_only['Content-Length']}"
    assert vote()[1]["error"]["code"] == "not_played", "a range is no delivery"

    fetch(client, state["sides"]["A"]["audio"])
    assert vote()[1]["error"]["code"] == "not_played", "one clip in full is not both"
    fetch(client, state["sides"]["B"]["audio"])
    assert clips.filter(delivered_at__isnull=False).count() == 2
    status, refused = vote()
    assert (status, refused["error"]["code"]) == (409, "not_listened"), "both in full, but no time to hear them"

    seconds = max(c.audio_seconds for c in clips)
    assert seconds > 1
    clips.update(delivered_at=F("delivered_at") - timedelta(seconds=seconds / 2))
    assert vote()[1]["error"]["code"] == "not_listened", "half the duration is not enough"
    assert not Vote.objects.exists() and not Battle.objects.get(public_id=battle_id).voted
    clips.update(delivered_at=F("delivered_at") - timedelta(seconds=seconds / 2 + 0.1))
    status, state = vote()
    assert status == 200 and state["voted"] == "left"


def test_both_clips_of_each_battle_have_one_size_and_one_length(voices):
    # Tried: four battles among the four espeak voices, which speak one text at different speeds (their stored
    # clips differ in length); each clip fetched in full, and once as the range a media element asks for.
    client = voter()
    unpadded: set[int] = set()
    for _ in range(4):
        _, state = post(client, "/speech/battles/", {"text": TEXT})
        state = finished(client, state["battle"])
        sizes, lengths = set(), set()
        for label in "AB":
            response, body = fetch(client, state["sides"][label]["audio"])
            ranged, same = fetch(client, state["sides"][label]["audio"], HTTP_RANGE="bytes=0-")
            assert ranged.status_code == 206 and same == body
            sizes |= {int(response["Content-Length"]), len(body), int(ranged["Content-Length"])}
            with wave.open(io.BytesIO(body)) as reader:
                lengths.add(reader.getnframes())
                assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, SAMPLE_RATE)
                pcm = reader.readframes(reader.getnframes())
            stored = Turn.objects.get(side__battle__public_id=state["battle"], side__position=(
                "left" if label == "A" else "right")).speech_clip
            with clip_storage().open(stored.audio.name, "rb") as handle:
                original = handle.read()
            unpadded.add(len(original))
            with wave.open(io.BytesIO(original)) as reader:
                spoken = reader.readframes(reader.getnframes())
            assert pcm.startswith(spoken) and set(pcm[len(spoken):]) <= {0}, "the voice as stored, then silence"
        assert len(sizes) == 1, f"one Content-Length for both clips of a battle, got {sizes}"
        assert len(lengths) == 1, f"one declared duration for both clips of a battle, got {lengths}"
    assert len(unpadded) > 1, "the voices spoke the text at different lengths, so padding was needed"


def test_while_one_voice_still_speaks_the_other_reads_as_speaking_too(voices):
    # Tried: a finished battle whose right side is put back to running, as if the left voice had been faster;
    # then the right side failed instead.
    client = voter()
    _, state = post(client, "/speech/battles/", {"text": TEXT})
    battle_id = finished(client, state["battle"])["battle"]
    right = Turn.objects.filter(side__battle__public_id=battle_id, side__position="right")
    right.update(status=Turn.Status.RUNNING)
    state = client.get(f"/speech/battles/{battle_id}/").json()
    assert [(s["status"], s["audio"]) for s in state["sides"].values()] == [("running", None)] * 2
    assert client.get(f"/speech/battles/{battle_id}/A.wav").json()["error"]["code"] == "not_ready"
    right.update(status=Turn.Status.FAILED, error="The speech engine took too long.")
    state = client.get(f"/speech/battles/{battle_id}/").json()
    assert [(s["status"], s["error"]) for s in state["sides"].values()] == [("done", ""), ("failed", VOICE_FAILED)]


def test_voice_battles_share_the_battle_rate_limit(voices, settings):
    # Tried: two voice battles from one session with a limit of one battle per window.
    settings.ARENA_RATE_LIMIT_BATTLES = 1
    client = voter()
    assert post(client, "/speech/battles/", {"text": TEXT})[0] == 201
    status, refused = post(client, "/speech/battles/", {"text": TEXT})
    assert (status, refused["error"]["code"]) == (429, "rate_limited") and refused["error"]["message"]
    assert Battle.objects.count() == 1
    assert inprocess_idle(60)
