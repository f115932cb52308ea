"""The voices every arena has without a network: espeak-ng voices and variants, for voice battles."""

from __future__ import annotations

from collections.abc import Callable

from .forms import check_model_entry_fields
from .models import ModelEntry

# slug, display name, espeak-ng voice (language+variant): distinct accents and timbres, so battles are audible.
DEFAULT_VOICES: tuple[tuple[str, str, str], ...] = (
    ("espeak-en-us-m3", "eSpeak NG US English (m3)", "en-us+m3"),
    ("espeak-en-gb-rp-f2", "eSpeak NG British RP (f2)", "en-gb-x-rp+f2"),
    ("espeak-en-scotland-m7", "eSpeak NG Scottish English (m7)", "en-gb-scotland+m7"),
    ("espeak-en-caribbean-f4", "eSpeak NG Caribbean English (f4)", "en-029+f4"),
)
_FACTS = {
    "organization": "eSpeak NG",
    "license": "GPL-3.0-or-later",
    "provider": ModelEntry.Provider.ESPEAK,
    "modality": ModelEntry.Modality.SPEECH,
    "is_inhouse": False,
}
_SETTINGS = {"visibility": ModelEntry.Visibility.PUBLIC, "pool": "default", "sampling_weight": 1.0}


def default_voices_seed(*, log: Callable[[str], None] = print) -> list[tuple[ModelEntry, bool]]:
    """Register the default voices idempotently: facts kept true, what an operator tuned left alone."""
    seeded = []
    for slug, display_name, voice in DEFAULT_VOICES:
        facts = {**_FACTS, "voice": voice}
        errors = check_model_entry_fields({**facts, **_SETTINGS, "display_name": display_name})
        if errors:
            raise ValueError(f"{slug}: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        entry, created = ModelEntry.objects.update_or_create(
            slug=slug, defaults=facts, create_defaults={**facts, **_SETTINGS, "display_name": display_name}
        )
        log(f"{slug}: {'registered' if created else 'already registered, updated'}")
        seeded.append((entry, created))
    return seeded
