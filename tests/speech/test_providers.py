"""Speech providers: real espeak-ng synthesis, and the OpenAI-compatible /v1/audio/speech endpoint against a stand-in
server on loopback; every clip comes out in the arena's one format, with nothing of its source left in it."""

from __future__ import annotations

import io
import wave

import pytest

from inference import GenerationError, generate
from inference import speech
from inference.speech import SAMPLE_RATE, audio_normalise, synthesize
from models_hub.models import ModelEntry
from models_hub.speech_defaults import DEFAULT_VOICES

from .standin_speech import ENCODER_TAG, tone_wav

TEXT = "The quick brown fox jumps over the lazy dog."


def voice(v: str) -> ModelEntry:
    # Unsaved entries: synthesize needs only the entry's fields.
    return ModelEntry(slug=f"voice-{v}", display_name=v, provider="espeak", modality="speech", voice=v)


def chunks_of(wav: bytes) -> list[bytes]:
    ids, i = [], 12
    while i + 8 <= len(wav):
        ids.append(wav[i:i + 4])
        i += 8 + int.from_bytes(wav[i + 4:i + 8], "little") + (int.from_bytes(wav[i + 4:i + 8], "little") % 2)
    return ids


def params(wav: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.getnchannels(), reader.getsampwidth(), reader.getframerate()


@pytest.mark.parametrize("v", [d.voice for d in DEFAULT_VOICES])
def test_every_default_voice_speaks_in_the_arenas_one_format(v):
    result = synthesize(voice(v), TEXT)
    assert params(result.audio) == (1, 2, SAMPLE_RATE)
    assert chunks_of(result.audio) == [b"fmt ", b"data"]
    assert 1.0 < result.audio_seconds < 10.0, "a sentence takes seconds to say"
    assert result.generation_seconds > 0 and result.real_time_factor > 0


def test_the_default_voices_sound_different():
    clips = {d.voice: synthesize(voice(d.voice), TEXT).audio for d in DEFAULT_VOICES}
    assert len(set(clips.values())) == len(DEFAULT_VOICES)


def test_a_longer_text_gives_a_longer_clip():
    short = synthesize(voice("en-us+m3"), "Hello.")
    long = synthesize(voice("en-us+m3"), "Hello. " + TEXT + " " + TEXT)
    assert long.audio_seconds > 2 * short.audio_seconds


def test_a_text_that_looks_like_an_option_is_read_not_obeyed():
    # The text goes to espeak-ng on stdin: "--help" or "-v xx" must be spoken, not parsed.
    result = synthesize(voice("en-us"), "--help -v xx --stdout")
    assert result.audio_seconds > 0.5


def test_an_unknown_voice_fails_with_a_message_that_names_nothing():
    with pytest.raises(GenerationError) as caught:
        synthesize(voice("zz-nope"), TEXT)
    assert "zz-nope" not in str(caught.value) and "espeak" not in str(caught.value).lower()


def test_a_text_model_cannot_speak_and_a_voice_cannot_chat():
    text_model = ModelEntry(slug="chatty", provider="openai", modality="text", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(GenerationError, match="misconfigured"):
        synthesize(text_model, TEXT)
    with pytest.raises(GenerationError, match="misconfigured"):
        generate(voice("en-us"), [{"role": "user", "content": "hi"}])


def test_normalising_resamples_mixes_and_strips_metadata():
    source = tone_wav(rate=48000, channels=2, width=3, seconds=1.5)
    assert ENCODER_TAG in source
    out, seconds = audio_normalise(source)
    assert params(out) == (1, 2, SAMPLE_RATE)
    assert ENCODER_TAG not in out and chunks_of(out) == [b"fmt ", b"data"]
    assert seconds == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("data", [b"", b"ID3\x03\x00 an mp3 file", b"RIFF\x00\x00\x00\x00WAVEjunk" + b"\x00" * 40, b"<html></html>" * 10])
def test_normalising_refuses_what_is_not_pcm_wav(data):
    with pytest.raises((ValueError, EOFError, wave.Error)):
        audio_normalise(data)


def endpoint(standin, behaviour: str, **fields) -> ModelEntry:
    return ModelEntry(
        slug="secret-tts", display_name="SecretTTS", provider="openai", modality="speech",
        base_url=standin.base_url(behaviour), remote_model="secret-tts-1", voice="alloy", **fields,
    )


def test_an_endpoints_clip_is_asked_for_as_wav_and_re_encoded(speech_standin):
    before = len(speech_standin.requests)
    result = synthesize(endpoint(speech_standin, "wav"), TEXT)
    request = speech_standin.requests[before]
    assert request["path"] == "/wav/v1/audio/speech"
    assert request["body"] == {"model": "secret-tts-1", "input": TEXT, "voice": "alloy", "response_format": "wav"}
    assert params(result.audio) == (1, 2, SAMPLE_RATE) and ENCODER_TAG not in result.audio
    assert result.audio_seconds == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("behaviour,reason", [
    ("html", speech.NOT_AUDIO),
    ("silence", speech.NO_SPEECH),
    ("fail", "The model's server answered with an error (HTTP 500)."),
])
def test_an_endpoint_that_sends_no_usable_audio_fails_clearly(speech_standin, behaviour, reason):
    with pytest.raises(GenerationError) as caught:
        synthesize(endpoint(speech_standin, behaviour), TEXT)
    assert str(caught.value) == reason
    for secret in ("SecretTTS", "Secretcorp", "secret-tts", "127.0.0.1", "alloy"):
        assert secret not in str(caught.value)


def test_a_hanging_endpoint_times_out(speech_standin, settings):
    settings.ARENA_OPENAI_READ_TIMEOUT = 1.0
    with pytest.raises(GenerationError) as caught:
        synthesize(endpoint(speech_standin, "hang"), TEXT)
    assert str(caught.value) == "The model's server took too long to answer."


def test_the_api_key_comes_from_the_named_environment_variable(speech_standin, monkeypatch):
    entry = endpoint(speech_standin, "key", api_key_env="ARENA_KEY_TEST_TTS")
    monkeypatch.delenv("ARENA_KEY_TEST_TTS", raising=False)
    with pytest.raises(GenerationError, match="API key is not configured"):
        synthesize(entry, TEXT)
    monkeypatch.setenv("ARENA_KEY_TEST_TTS", "sekrit")
    assert synthesize(entry, TEXT).audio_seconds > 1.0
    assert speech_standin.requests[-1]["authorization"] == "Bearer sekrit"
