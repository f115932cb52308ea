"""Dispatch to real Celery worker processes over the real Redis: tokens through the Redis channel layer, failures,
a worker killed mid-job, and pools without workers."""

from __future__ import annotations

import asyncio
import os
import re
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
from tests.workers import CeleryWorker, wait_for

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
async def test_it_generates_on_a_worker_of_the_pool_and_streams_tokens_in_order(standin, worker, pool_name, settings):
    settings.ARENA_PACE = False  # the worker's own stream, as it leaves the job (equal pace re-times it for the page)
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


def local_pair(path, pool: str, **fields):
    """Two model entries on one checkpoint: every turn of their battles runs on the same loaded model."""
    from models_hub.models import ModelEntry

    common = dict(provider="transformers", checkpoint_path=str(path), pool=pool, temperature=0.0, **fields)
    return [ModelEntry.objects.create(slug=f"local-{side}", display_name=f"Local {side}", **common) for side in "ab"]


def batch_peak(log: str) -> int:
    """The most answers the worker's engine decoded in one step, from its log (the warm-up at load is 1)."""
    return max((int(n) for n in re.findall(r"(\d+) answers in one batch", log)), default=0)


@pytest.fixture
def thread_worker(pool_name, tmp_path, settings):
    settings.ARENA_INPROCESS_WORKERS = False
    # A long time limit: eight answers at once on two shared cores can take minutes.
    running = CeleryWorker(pool_name, log=tmp_path / "worker.log", threads=8, time_limit=900).start()
    yield running
    running.stop()


@pytest.mark.asyncio
@pytest.mark.timeout(900)
async def test_a_thread_worker_takes_eight_turns_at_once_into_one_engine(built_models, thread_worker, pool_name,
                                                                        settings):
    settings.ARENA_PACE = False  # every batch of every answer, as the jobs send them
    from models_hub.builders import SMOLLM2_SLUG

    path = built_models[SMOLLM2_SLUG]
    await db(lambda: local_pair(path, pool_name, max_new_tokens=24))
    voters = [await Voter.open() for _ in range(4)]
    prompts = ["What is the capital of France?", "Name a colour.", "Write a haiku about rain.", "Say hello."]
    for voter, prompt in zip(voters, prompts):
        await voter.send({"type": "start", "prompt": prompt})

    ended = await asyncio.gather(*(voter.until_finished(timeout=600) for voter in voters))

    for voter, sides in zip(voters, ended):
        for side, frame in sides.items():
            assert frame["status"] == "done", frame
            streamed = "".join(f["text"] for f in voter.frames if f["type"] == "token" and f["side"] == side)
            assert streamed == frame["text"] != ""
        await voter.close()
    turns = await db(lambda: list(Turn.objects.all()))
    assert len(turns) == 8 and all(t.status == "done" for t in turns)
    # All eight were running at the same time: the last to start started before the first finished.
    assert max(t.started_at for t in turns) < min(t.finished_at for t in turns)
    log = thread_worker.log.read_text()
    # One copy of the weights and one engine for both entries, which decoded the turns together.
    assert log.count(f"loaded {path.resolve()}") == 1 or log.count(f"loaded {path}") == 1, log[-3000:]
    assert batch_peak(log) >= 2, log[-3000:]


@pytest.mark.timeout(900)
def test_a_thread_worker_killed_mid_batch_leaves_no_turn_hanging(built_models, pool_name, tmp_path, settings):
    import redis

    from arena.services import battle_create
    from models_hub.builders import SMOLLM2_SLUG
    from models_hub.models import ModelEntry

    settings.ARENA_INPROCESS_WORKERS = False
    local_pair(built_models[SMOLLM2_SLUG], pool_name, max_new_tokens=400)
    first = CeleryWorker(pool_name, log=tmp_path / "first.log", threads=8, time_limit=900).start()
    try:
        battles = [battle_create(session_key=f"s{i}", ip=f"10.0.0.{i}", mode="anonymous", prompt="Tell me a long story.")
                   for i in range(4)]  # fmt: skip
        wait_for(lambda: batch_peak(first.log.read_text()) >= 2, timeout=600)  # turns decoding together
        assert Turn.objects.filter(status="running").count() >= 2
    finally:
        first.kill()
    ModelEntry.objects.filter(pool=pool_name).update(max_new_tokens=16)  # a turn run afresh below ends quickly
    turns = list(Turn.objects.filter(side__battle__in=battles))
    assert len(turns) == 8 and all(t.status in ("running", "queued") for t in turns)
    # The jobs are unacknowledged in Redis; they come back once their visibility timeout has passed. Age them
    # instead of waiting it out, as the reaper test ages its turns.
    client = redis.Redis.from_url(settings.REDIS_URL)
    for tag, _ in client.zrange("unacked_index", 0, -1, withscores=True):
        client.zadd("unacked_index", {tag: time.time() - 100_000})
    second = CeleryWorker(pool_name, log=tmp_path / "second.log", threads=8, time_limit=900).start()
    try:
        wait_for(lambda: not Turn.objects.filter(pk__in=[t.pk for t in turns], status__in=("running", "queued")).exists(),
                 timeout=600)  # fmt: skip
    finally:
        second.stop()
    for turn in Turn.objects.filter(pk__in=[t.pk for t in turns]):
        was = next(t for t in turns if t.pk == turn.pk)
        assert turn.attempt == was.attempt  # redelivered once, never generated twice
        if was.status == "running":
            assert turn.status == "failed" and "stopped while answering" in turn.error
        else:
            assert turn.status in ("done", "failed")
