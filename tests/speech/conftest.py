from __future__ import annotations

import pytest

from models_hub.models import ModelEntry
from tests.browser import LiveArena

from .standin_speech import SpeechStandin

BLOCKED_WORD = "forbiddenword"  # on the live arena's moderation blocklist


@pytest.fixture(scope="session")
def speech_standin() -> SpeechStandin:
    server = SpeechStandin().start()
    yield server
    server.stop()


@pytest.fixture
def clip_dir(settings, tmp_path):
    """Clips go to a directory of this test (Django resets its storages when STORAGES changes)."""
    location = tmp_path / "clips"
    settings.STORAGES = {**settings.STORAGES, "speech": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)},
    }}
    return location


def endpoint_voice(standin: SpeechStandin, slug: str, behaviour: str, **fields) -> ModelEntry:
    """A speech model entry served by the stand-in speech server with the given behaviour."""
    defaults = dict(
        display_name=fields.pop("display_name", f"Endpoint {slug}"), provider="openai", modality="speech",
        base_url=standin.base_url(behaviour), remote_model=f"{slug}-tts", voice="alloy",
        organization=fields.pop("organization", f"Org of {slug}"),
    )
    defaults.update(fields)
    return ModelEntry.objects.create(slug=slug, **defaults)


@pytest.fixture
def speech_arena(tmp_path):
    """A daphne of the arena as in production (proof of work on, a moderation blocklist), clips under tmp_path."""
    live = LiveArena(
        tmp_path / "daphne.log", ARENA_SPEECH_MEDIA_DIR=str(tmp_path / "clips"), ARENA_POW="1", ARENA_POW_BITS="8",
        ARENA_MODERATION_BLOCKLIST=BLOCKED_WORD,
    ).start()
    yield live
    live.stop()
