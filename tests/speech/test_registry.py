"""Speech models in the registry: the default voices' seed, and the checks that keep modality and provider apart."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import IntegrityError

from models_hub.forms import check_model_entry_fields
from models_hub.models import ModelEntry
from models_hub.speech_defaults import DEFAULT_VOICES, NEURAL_VOICES

pytestmark = pytest.mark.django_db


def test_the_seed_registers_the_default_voices_once_and_keeps_what_an_operator_tuned():
    call_command("seed_speech_models", stdout=io.StringIO())
    assert set(ModelEntry.objects.filter(modality="speech", provider="espeak").values_list("slug", flat=True)) == {
        v.slug for v in DEFAULT_VOICES
    }
    assert set(ModelEntry.objects.filter(provider__in=["piper", "kokoro"]).values_list("slug", flat=True)) == {
        v.slug for v, _ in NEURAL_VOICES
    }
    ModelEntry.objects.filter(slug=DEFAULT_VOICES[0].slug).update(sampling_weight=3.0, voice="en-us", languages="")
    call_command("seed_speech_models", stdout=io.StringIO())
    entry = ModelEntry.objects.get(slug=DEFAULT_VOICES[0].slug)
    assert ModelEntry.objects.filter(modality="speech").count() == len(DEFAULT_VOICES) + len(NEURAL_VOICES)
    assert entry.sampling_weight == 3.0, "a tuned setting is left alone"
    assert entry.voice == DEFAULT_VOICES[0].voice, "the voice is a fact and is kept true"
    assert entry.languages == "en", "so are the languages it reads"


@pytest.mark.parametrize("fields,field,message", [
    ({"provider": "espeak", "modality": "text", "voice": "en-us"}, "modality", "speech model"),
    ({"provider": "espeak", "modality": "speech", "voice": "en us; rm -rf /"}, "voice", "espeak-ng voice"),
    ({"provider": "espeak", "modality": "speech", "voice": ""}, "voice", "espeak-ng voice"),
    ({"provider": "transformers", "modality": "speech", "checkpoint_path": "/"}, "modality", "answers in text"),
    ({"provider": "openai", "modality": "speech", "base_url": "http://tts:8000/v1", "remote_model": "tts-1"}, "voice", "voice"),
    ({"provider": "piper", "modality": "text", "voice": "en_US-joe-medium"}, "modality", "neural voice"),
    ({"provider": "kokoro", "modality": "speech", "voice": ""}, "voice", "jf_alpha"),
    ({"provider": "kokoro", "modality": "speech", "voice": "jf alpha; ls"}, "voice", "voice's name"),
])
def test_a_speech_entry_with_mismatched_fields_is_refused_with_a_clear_message(fields, field, message):
    errors = check_model_entry_fields({"visibility": "public", **fields})
    assert message in errors.get(field, ""), errors


def test_well_formed_speech_entries_pass_the_checks():
    assert check_model_entry_fields({"provider": "espeak", "modality": "speech", "voice": "en-gb-x-rp+f2"}) == {}
    assert check_model_entry_fields({"provider": "piper", "modality": "speech", "voice": "en_US-joe-medium"}) == {}
    assert check_model_entry_fields({"provider": "kokoro", "modality": "speech", "voice": "jm_kumo"}) == {}
    assert check_model_entry_fields({
        "provider": "openai", "modality": "speech", "base_url": "http://tts:8000/v1", "remote_model": "tts-1",
        "voice": "alloy",
    }) == {}


def test_languages_are_iso_codes_separated_by_commas():
    from django.core.exceptions import ValidationError

    field = ModelEntry._meta.get_field("languages")
    for good in ("", "en", "en,fr"):
        field.run_validators(good)
    for bad in ("en, fr", "English", "en;fr"):
        with pytest.raises(ValidationError):
            field.run_validators(bad)


def test_the_database_refuses_an_unknown_provider():
    with pytest.raises(IntegrityError):
        ModelEntry.objects.create(slug="odd", display_name="Odd", provider="festival", modality="speech")


def test_the_database_refuses_an_unknown_modality():
    with pytest.raises(IntegrityError):
        ModelEntry.objects.create(slug="odd", display_name="Odd", provider="espeak", modality="smell")
