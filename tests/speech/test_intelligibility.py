"""The intelligibility check: a neural voice reads the English examples, the offline recogniser (Whisper tiny.en)
writes down what it hears, and the word error rate reaches the voice board."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from inference.speech import synthesize
from inference.transcribe import transcribe_english
from models_hub.models import ModelEntry
from models_hub.speech_defaults import default_voices_seed
from speech.intelligibility import english_examples, word_errors, words
from speech.leaderboard import voice_checks_latest
from speech.models import SpeechVoiceCheck
from speech.services import EXAMPLE_TEXTS


def test_word_errors_count_substitutions_deletions_and_insertions():
    assert word_errors(words("the cat sat"), words("The cat sat.")) == 0
    assert word_errors(words("the cat sat"), words("the bat sat down")) == 2
    assert word_errors(words("the cat sat"), []) == 3


def test_only_the_english_examples_are_checked():
    checked = english_examples()
    assert checked and all(t in EXAMPLE_TEXTS for t in checked)
    assert not any("chat" in t or "gare" in t for t in checked), "the recogniser knows English only"


def test_the_recogniser_hears_what_a_voice_said_and_not_another_text():
    text = english_examples()[0]
    heard = words(transcribe_english(synthesize(
        ModelEntry(slug="joe", provider="piper", modality="speech", voice="en_US-joe-medium"), text
    ).audio))
    assert word_errors(words(text), heard) <= len(words(text)) // 5
    other = english_examples()[1]
    assert word_errors(words(other), heard) > len(words(other)) // 2


@pytest.mark.django_db
def test_check_voices_stores_each_english_voices_rate_for_the_board():
    default_voices_seed(log=lambda _: None)
    out = io.StringIO()
    call_command("check_voices", "piper-en-us-joe", "espeak-fr-fr-m1", stdout=out)
    assert "espeak-fr-fr-m1: reads no English" in out.getvalue()
    joe = ModelEntry.objects.get(slug="piper-en-us-joe")
    check = SpeechVoiceCheck.objects.get()
    assert check.model == joe and check.texts == len(english_examples())
    assert voice_checks_latest([joe.pk]) == {joe.pk: check.word_error_rate}
    assert check.word_error_rate < 0.2, "a neural voice reading English is understood"
