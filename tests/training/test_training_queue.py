"""The admin action "Train a new version from votes" queues a run on the `training` queue; a real Celery worker
of that queue carries it out, and its status and log show in the admin. The checkpoint here is a stub, so the
run fails at loading: what is checked is the path from the admin to the worker and back, and that a failed run
registers nothing."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User

from arena.models import Battle, Side, Turn, Vote
from models_hub.models import ModelEntry
from tests.workers import CeleryWorker
from training.models import TrainingRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(300)]

CHANGELIST = "/admin/models_hub/modelentry/"


def voted_battle(left: ModelEntry, right: ModelEntry, choice: str, prompt: str) -> Vote:
    battle = Battle.objects.create(session_key="person", categories=[])
    for position, model, answer in (("left", left, "Short."), ("right", right, "A much longer answer.")):
        side = Side.objects.create(battle=battle, position=position, model=model)
        Turn.objects.create(side=side, index=0, prompt=prompt, response=answer, status=Turn.Status.DONE)
    return Vote.objects.create(battle=battle, choice=choice, session_key="person")


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("operator", password="pw-operator-123", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_the_admin_queues_a_run_that_a_training_worker_carries_out(staff_client, tmp_path, settings) -> None:
    settings.ARENA_INPROCESS_WORKERS = False
    checkpoint = tmp_path / "stub"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    inhouse = ModelEntry.objects.create(
        slug="inhouse", display_name="In-house", checkpoint_path=str(checkpoint), is_inhouse=True,
        visibility="preview", codename="hornbill",
    )
    rival = ModelEntry.objects.create(slug="rival", display_name="Rival", checkpoint_path=str(checkpoint))
    voted_battle(inhouse, rival, "left", "Say hi. Answer in at most 3 words.")
    voted_battle(rival, inhouse, "right", "Say bye. Answer in at most 3 words.")

    refused = staff_client.post(CHANGELIST, {"action": "train_from_votes", "_selected_action": [rival.pk]}, follow=True)
    assert "only in-house models are trained here" in refused.content.decode()
    assert TrainingRun.objects.count() == 0

    worker = CeleryWorker("training", log=tmp_path / "worker.log").start()
    try:
        response = staff_client.post(
            CHANGELIST, {"action": "train_from_votes", "_selected_action": [inhouse.pk]}, follow=True
        )
        assert "training run" in response.content.decode() and "queued" in response.content.decode()
        run = TrainingRun.objects.get()
        assert run.parent == inhouse and run.options["from_votes"] is True and run.requested_by == "operator"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status in ("done", "failed"):
                break
            time.sleep(0.5)
    finally:
        worker.stop()

    assert run.status == "failed", (run.status, run.log, (tmp_path / "worker.log").read_text()[-2000:])
    assert "Training In-house (v1) on 2 preference pairs" in run.log
    assert run.error.startswith("Training failed") and run.finished_at is not None and run.result is None
    assert ModelEntry.objects.count() == 2
    page = staff_client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert "Training failed" in page and "on 2 preference pairs" in page
