"""Provider-specific checks for a model entry, used by the admin form and by the commands that register models."""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError

from .endpoints import api_key_env_problem, base_url_problem, checkpoint_path_problem
from .models import ModelEntry


def check_model_entry_fields(data: dict) -> dict[str, str]:
    """Return {field: message} for every provider-specific problem in `data` (a model entry's cleaned values)."""
    errors: dict[str, str] = {}
    provider = data.get("provider")
    if provider == ModelEntry.Provider.TRANSFORMERS:
        path = (data.get("checkpoint_path") or "").strip()
        if not path:
            errors["checkpoint_path"] = "A transformers entry needs the path of a local checkpoint directory."
        elif problem := checkpoint_path_problem(path):
            errors["checkpoint_path"] = problem
    elif provider == ModelEntry.Provider.OPENAI:
        url = (data.get("base_url") or "").strip()
        if not url:
            errors["base_url"] = "An OpenAI-compatible entry needs the endpoint's base URL, e.g. http://host:8000/v1."
        elif problem := base_url_problem(url):
            errors["base_url"] = problem
        if not (data.get("remote_model") or "").strip():
            errors["remote_model"] = "An OpenAI-compatible entry needs the model name the endpoint serves."
        if problem := api_key_env_problem((data.get("api_key_env") or "").strip()):
            errors["api_key_env"] = problem
    errors.update(check_speech_fields(data))
    if data.get("visibility") == ModelEntry.Visibility.PREVIEW and not (data.get("codename") or "").strip():
        errors["codename"] = "A preview model needs a codename: voters see it instead of the real name."
    return errors


# The fields that belong to one provider only; the admin shows those of the chosen provider (models_hub/admin.js).
PROVIDER_FIELDS = {
    ModelEntry.Provider.TRANSFORMERS: ("checkpoint_path", "prompt_format"),
    ModelEntry.Provider.OPENAI: ("base_url", "remote_model", "api_key_env"),
}
# `voice` belongs to speech models of either provider that speaks, so it is always shown.


# The local neural engines, each with an example of its voices' names (inference.piper, inference.kokoro list them).
NEURAL_VOICES = {ModelEntry.Provider.PIPER: "en_US-joe-medium", ModelEntry.Provider.KOKORO: "jf_alpha"}
NEURAL_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ESPEAK_VOICE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*(\+[a-z0-9]{1,16})?$")


def check_speech_fields(data: dict) -> dict[str, str]:
    """Modality against provider and voice: transformers answer in text, espeak-ng speaks, an endpoint does either."""
    errors: dict[str, str] = {}
    provider, modality = data.get("provider"), data.get("modality") or ModelEntry.Modality.TEXT
    voice = (data.get("voice") or "").strip()
    if provider == ModelEntry.Provider.TRANSFORMERS and modality != ModelEntry.Modality.TEXT:
        errors["modality"] = "A local transformers checkpoint answers in text: set the modality to text."
    if provider == ModelEntry.Provider.ESPEAK:
        if modality != ModelEntry.Modality.SPEECH:
            errors["modality"] = "An espeak-ng voice is a speech model: set the modality to speech."
        if not ESPEAK_VOICE.match(voice):
            errors["voice"] = "Give an espeak-ng voice such as en-us, en-gb-x-rp or en-us+m3 (espeak-ng --voices)."
    elif modality == ModelEntry.Modality.SPEECH and provider == ModelEntry.Provider.OPENAI and not voice:
        errors["voice"] = "A speech endpoint needs the voice to ask for, e.g. alloy."
    if provider in NEURAL_VOICES:
        if modality != ModelEntry.Modality.SPEECH:
            errors["modality"] = "A neural voice is a speech model: set the modality to speech."
        if not NEURAL_VOICE.match(voice):
            errors["voice"] = f"Give the voice's name, e.g. {NEURAL_VOICES[provider]}."
    return errors


SAMPLING_KNOBS = ("battle_target_share", "boost_factor", "boost_until_votes")


class ModelEntryForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL", max_length=500, required=False, assume_scheme="https",
        help_text=ModelEntry._meta.get_field("base_url").help_text,
    )

    class Meta:
        model = ModelEntry
        fields = "__all__"
        labels = {
            "display_name": "Display name",
            "slug": "Short name (slug)",
            "checkpoint_path": "Checkpoint directory",
            "remote_model": "Model name at the endpoint",
            "api_key_env": "API key environment variable",
            "prompt_format": "Prompt format",
            "max_new_tokens": "Longest answer (tokens)",
            "top_p": "Top-p",
            "system_prompt": "System prompt",
            "pool": "Worker pool",
            "sampling_weight": "Sampling weight",
            "is_active": "Active",
            "is_inhouse": "In-house model",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A form that leaves the modality out (written before voices existed) registers a text model.
        if "modality" in self.fields:
            self.fields["modality"].required = False
        for name in SAMPLING_KNOBS:
            if name in self.fields:
                self.fields[name].required = False

    def clean_modality(self) -> str:
        return self.cleaned_data.get("modality") or ModelEntry.Modality.TEXT

    def _post_clean(self) -> None:
        # The sampling knobs left empty (or left out by a form written before them) keep their defaults.
        for name in SAMPLING_KNOBS:
            if name in self.cleaned_data and self.cleaned_data[name] is None:
                self.cleaned_data[name] = ModelEntry._meta.get_field(name).default
        super()._post_clean()

    def clean(self) -> dict:
        cleaned = super().clean()
        for field, message in check_model_entry_fields(cleaned).items():
            self.add_error(field, ValidationError(message))
        # The other provider's fields are hidden on the form; what they still held is dropped, not kept unseen.
        provider = cleaned.get("provider")
        for other, fields in PROVIDER_FIELDS.items():
            if provider in PROVIDER_FIELDS and other != provider:
                for field in fields:
                    if field in cleaned and field != "prompt_format":
                        cleaned[field] = ""
        return cleaned
