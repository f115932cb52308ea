"""Voice battles on a real Celery worker process over the real Redis, and voices whose pool has no worker."""

from __future__ import annotations

import time
import uuid

import pytest

from arena.models import Turn
from arena.services import BattleError
from models_hub.models import ModelEntry
from models_hub.speech_defaults import default_voices_seed
from speech.models import SpeechClip
from speech.services import speech_battle_create
from tests.workers import CeleryWorker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def pool_name() -> str:
    return f"voices-{uuid.uuid4().hex[:8]}"


def test_a_worker_of_the_voices_pool_speaks_both_sides(settings, clip_dir, pool_name, tmp_path):
    settings.ARENA_INPROCESS_WORKERS = False
    default_voices_seed(log=lambda _: None, neural=False)
    ModelEntry.objects.filter(modality="speech").update(pool=pool_name)
    worker = CeleryWorker(pool_name, log=tmp_path / "worker.log")
    worker.env["ARENA_SPEECH_MEDIA_DIR"] = str(clip_dir)  # the worker stores where this test reads
    worker.start()
    try:
        battle = speech_battle_create(session_key="s-worker", ip="10.0.0.9", text="Spoken on a worker.")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            statuses = set(Turn.objects.filter(side__battle=battle).values_list("status", flat=True))
            if statuses <= {"done", "failed"}:
                break
            time.sleep(0.3)
    finally:
        worker.stop()
    assert statuses == {"done"}, (tmp_path / "worker.log").read_text()[-2000:]
    clips = list(SpeechClip.objects.filter(turn__side__battle=battle))
    assert len(clips) == 2
    for clip in clips:
        assert (clip_dir / clip.audio.name).read_bytes()[:4] == b"RIFF"


def test_voices_whose_pool_has_no_worker_are_not_drawn(settings, clip_dir, pool_name):
    settings.ARENA_INPROCESS_WORKERS = False
    default_voices_seed(log=lambda _: None, neural=False)
    ModelEntry.objects.filter(modality="speech").update(pool=pool_name)  # nobody serves this pool
    with pytest.raises(BattleError) as caught:
        speech_battle_create(session_key="s-none", ip="10.0.0.9", text="Nobody is listening.")
    assert caught.value.code == "no_models" and caught.value.status == 503
