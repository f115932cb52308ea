"""Dispatch to real Celery worker processes over the real Redis: tokens through the Redis channel layer, failures,
a worker killed mid-job, and pools without workers."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from arena.models import Battle, Turn
from arena.generation import turn_reap_stale
from inference.pools import live_pools
from tests.workers import CeleryWorker

from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def pool_name() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def worker(pool_name, tmp_path, settings):
    settings.ARENA_INPROCESS_WORKERS = False
    running = CeleryWorker(pool_name, log=tmp_path / "worker.log").start()
    yield running
    running.stop()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, killed and not yet reaped, runs no code)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@database_sync_to_async
def db(fn):
    return fn()


@pytest.mark.asyncio
async def test_it_generates_on_a_worker_of_the_pool_and_streams_tokens_in_order(standin, worker, pool_name):
    await db(lambda: [standin_entry(standin, f"w{i}", "echo-40", pool=pool_name) for i in range(2)])
    voter = await Voter.open()
    await voter.send({"type": "start", "prompt": "stream please"})
    ended = await voter.until_finished(timeout=90)
    for side, frame in ended.items():
        assert frame["status"] == "done"
        streamed = "".join(f["text"] for f in voter.frames if f["type"] == "token" and f["side"] == side)
        assert streamed == frame["text"] == "word " * 40
    turns = await db(lambda: list(Turn.objects.all()))
    assert all(t.status == "done" and t.output_tokens == 40 for t in turns)
    # Batched: far fewer frames than tokens.
    assert len([f for f in voter.frames if f["type"] == "token"]) < 80
    await voter.close()


def test_it_fails_a_turn_whose_model_cannot_load_with_a_readable_reason(standin, worker, pool_name, tmp_path):
    from models_hub.models import ModelEntry

    from arena.services import battle_create

    checkpoint = tmp_path / "vanished"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    ModelEntry.objects.create(slug="gone", display_name="Gone", checkpoint_path=str(checkpoint), pool=pool_name)
    ModelEntry.objects.create(slug="gone2", display_name="Gone2", checkpoint_path=str(checkpoint), pool=pool_name)
    for path in checkpoint.iterdir():
        path.unlink()
    checkpoint.rmdir()
    battle = battle_create(session_key="s", ip="1.2.3.4", mode="anonymous", prompt="hi")
    turns = wait_for(lambda: [t for t in Turn.objects.filter(side__battle=battle) if t.status == "failed"] or None)
    turns = wait_for(lambda: len(Turn.objects.filter(side__battle=battle, status="failed")) == 2 and Turn.objects.filter(side__battle=battle))
    for turn in turns:
        assert turn.error and "vanished" not in turn.error and "Gone" not in turn.error


def test_it_ends_a_turn_whose_worker_process_died_mid_job_without_generating_twice(standin, worker, pool_name):
    from arena.services import battle_create

    standin_entry(standin, "slow-a", "slow", pool=pool_name)
    standin_entry(standin, "slow-b", "slow", pool=pool_name)
    battle = battle_create(session_key="s", ip="1.2.3.4", mode="anonymous", prompt="hi")
    running = wait_for(lambda: Turn.objects.filter(side__battle=battle, status="running").first())
    children = worker.pool_children()
    assert children, "the prefork worker has a child process"
    for child in children:
        os.kill(child, signal.SIGKILL)
    # The job is handed out again; finding its turn already claimed, it ends it instead of running it twice.
    wait_for(lambda: Turn.objects.get(pk=running.pk).status == "failed", timeout=60)
    failed = Turn.objects.get(pk=running.pk)
    assert "stopped while answering" in failed.error
    assert failed.attempt == running.attempt
    # The other side still gets its answer from the restarted pool process.
    other = Turn.objects.filter(side__battle=battle).exclude(pk=running.pk).get()
    ended = wait_for(lambda: (t := Turn.objects.get(pk=other.pk)).status in ("done", "failed") and t, timeout=90)
    assert ended.status == "done" and ended.response and not ended.error, ended.error


def test_it_reaps_a_turn_left_running_by_a_worker_host_that_vanished(standin, worker, pool_name):
    from arena.services import battle_create

    standin_entry(standin, "slow-c", "slow", pool=pool_name)
    standin_entry(standin, "slow-d", "slow", pool=pool_name)
    battle = battle_create(session_key="s", ip="1.2.3.4", mode="anonymous", prompt="hi")
    running = wait_for(lambda: Turn.objects.filter(side__battle=battle, status="running").first())
    processes = [worker.process.pid, *worker.pool_children()]
    worker.kill()
    # Every process of the worker is gone (waited for, not slept on): nothing is left that could end the turn.
    wait_for(lambda: not any(alive(pid) for pid in processes), timeout=30)
    assert Turn.objects.get(pk=running.pk).status == "running"
    # Nothing else will ever finish it: past the time limit, the reaper does.
    Turn.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(hours=1))
    Turn.objects.filter(side__battle=battle, status="queued").update(queued_at=timezone.now() - timedelta(hours=1))
    assert turn_reap_stale() >= 1
    assert set(Turn.objects.filter(side__battle=battle).values_list("status", flat=True)) == {"failed"}


def test_it_draws_only_models_whose_pool_has_a_live_worker(standin, worker, pool_name, settings):
    from arena.services import BattleError, battle_create

    assert wait_for(lambda: live_pools({pool_name}) == {pool_name}, timeout=20)
    assert live_pools({"nobody-serves-this"}) == set()
    standin_entry(standin, "served", "echo", pool=pool_name)
    standin_entry(standin, "orphan-1", "echo", pool="nobody-serves-this")
    with pytest.raises(BattleError) as refused:
        battle_create(session_key="s", ip="1.2.3.4", mode="anonymous", prompt="hi")
    assert refused.value.status == 503
    standin_entry(standin, "served-2", "echo", pool=pool_name)
    for _ in range(5):
        battle = battle_create(session_key="s", ip="1.2.3.4", mode="anonymous", prompt="hi")
        assert set(battle.sides.values_list("model__slug", flat=True)) == {"served", "served-2"}
    assert Battle.objects.count() == 5
