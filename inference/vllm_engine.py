"""vLLM as the engine of a worker host (`ARENA_ENGINE=vllm`): one supervised `vllm serve` per loaded checkpoint.

Each local checkpoint a worker serves gets its own vLLM OpenAI-compatible server on loopback, started and warmed
when the worker starts (the pool's heartbeat waits for it) and restarted by a watchdog when it dies. Answers go
through the same path as transformers ones: the prompt is tokenised here exactly as `local.py` does, sent as
token ids to /v1/completions, and the streamed text runs through the same `TextStream` (trimming, stop patterns
of plain-prompt models), so a greedy answer reads the same on either engine. Closing the stream (cancel, stop,
a stop pattern, a timeout) aborts the request inside vLLM.

A separate process per model, rather than vLLM's engine inside the worker: a crash or a leak of the engine
takes down only that model's server, the watchdog restarts it without restarting the worker, and the
HTTP side (streaming, errors, timeouts) is the OpenAI-compatible provider the arena already has.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from .base import GenerationError, GenerationResult, Message, OnText, ShouldStop

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

logger = logging.getLogger(__name__)

# What a voter reads when the engine fails: the same words as any other server error of a local model.
FAILED = "The model failed to answer because of a server error."
SERVED_NAME = "arena"  # the model name each server answers to (one model per server)


class EngineUnavailable(Exception):
    """vLLM could not start for a checkpoint (not installed, an architecture it cannot load): the caller falls
    back to the transformers engine."""


def cpu_list(cpus: set[int]) -> str:
    """`{0, 1, 2, 5}` -> "0-2,5": the form of VLLM_CPU_OMP_THREADS_BIND."""
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and cpu == int(ranges[-1].split("-")[-1]) + 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def _on_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a requirement
        return False
    return torch.cuda.is_available()


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `vllm serve` child: caches under var/, the cores this worker may use, the CPU KV
    cache size, and nothing fetched from outside."""
    env = dict(os.environ if base is None else base)
    root = settings.ARENA_VLLM_DIR
    env.update(
        VLLM_CACHE_ROOT=str(root / "cache"),
        VLLM_CONFIG_ROOT=str(root / "config"),
        TORCHINDUCTOR_CACHE_DIR=str(root / "inductor"),
        TRITON_CACHE_DIR=str(root / "triton"),
        XDG_CACHE_HOME=str(root / "xdg"),
        TMPDIR=str(root / "tmp"),  # vLLM's rendezvous files and torch's compile scratch, not /tmp
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_CPU_KVCACHE_SPACE=str(settings.ARENA_VLLM_CPU_KV_CACHE_GIB),
    )
    if "VLLM_CPU_OMP_THREADS_BIND" not in env:
        # vLLM binds one core by default; the worker's whole affinity set is what it was given.
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_list(os.sched_getaffinity(0))
    return env


def server_command(checkpoint: Path, *, port: int, on_cuda: bool) -> list[str]:
    command = [
        # `vllm serve` itself, less the CLI wrapper (which looks up the distribution "vllm", not "vllm-cpu").
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
        "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", settings.ARENA_VLLM_DTYPE,
        "--max-model-len", str(settings.ARENA_VLLM_MAX_MODEL_LEN),
        "--max-num-seqs", str(settings.ARENA_ENGINE_MAX_BATCH),
        "--generation-config", "vllm",  # sampling comes from the request, as the arena's entry sets it
        "--disable-uvicorn-access-log",
    ]
    if on_cuda:
        command += ["--gpu-memory-utilization", str(settings.ARENA_VLLM_GPU_MEMORY_UTILIZATION)]
    if settings.ARENA_VLLM_ENFORCE_EAGER:
        command.append("--enforce-eager")
    return command


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ModelServer:
    """One `vllm serve` process for one checkpoint, restarted when it dies. Thread-safe: `lock` guards starts."""

    checkpoint: Path  # what vLLM loads (a converted copy for layouts it cannot read as built)
    source: Path  # the registry's checkpoint: its tokenizer builds the prompts
    tokenizer: Any
    port: int = 0
    process: subprocess.Popen | None = None
    starts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    encode_lock: threading.Lock = field(default_factory=threading.Lock)
    top_k: int = 0
    closed: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_started(self) -> None:
        """Start the server unless it runs; wait until it answers. Raises EngineUnavailable if it cannot start."""
        with self.lock:
            if self.alive() or self.closed:
                return
            self._start()

    def _start(self) -> None:
        log_dir = settings.ARENA_VLLM_DIR / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        (settings.ARENA_VLLM_DIR / "tmp").mkdir(exist_ok=True)
        self.port = _free_port()
        log_path = log_dir / f"{self.checkpoint.name}-{self.port}.log"
        command = server_command(self.checkpoint, port=self.port, on_cuda=_on_cuda())
        started = time.monotonic()
        with open(log_path, "ab") as log_file:
            # Its own process group, so stopping it stops its engine-core children too; and it is told to stop
            # when the worker dies, so a killed worker leaves no server holding the model's memory.
            self.process = subprocess.Popen(
                command, env=server_env(), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(settings.ARENA_VLLM_DIR), start_new_session=True, preexec_fn=_die_with_parent,
            )
        self.starts += 1
        logger.info("starting vLLM for %s on port %s (log: %s)", self.checkpoint, self.port, log_path)
        deadline = started + settings.ARENA_VLLM_START_TIMEOUT
        last_said = started
        while True:
            if self.closed:  # the worker is shutting down: stop waiting
                self.stop()
                raise EngineUnavailable(f"vLLM for {self.checkpoint} was stopped while starting")
            if self.process is None or self.process.poll() is not None:
                raise EngineUnavailable(f"vLLM exited loading {self.checkpoint}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    break
            now = time.monotonic()
            if now > deadline:
                self.stop()
                raise EngineUnavailable(f"vLLM did not answer within {settings.ARENA_VLLM_START_TIMEOUT} s for {self.checkpoint}")
            if now - last_said >= 15:
                logger.info("vLLM for %s still starting (%.0f s)", self.checkpoint.name, now - started)
                last_said = now
            time.sleep(0.5)
        logger.info("vLLM for %s ready in %.1f s", self.checkpoint.name, time.monotonic() - started)

    def stop(self) -> None:
        """Stop the server and everything it started (its process group), also what outlived a dead server."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        """Stop for good (worker shutdown): also a start in progress on another thread gives up."""
        self.closed = True
        self.stop()


_servers: dict[tuple, ModelServer] = {}
_unavailable: set[tuple] = set()
_servers_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}
_watchdog_started = False


def _key(path: Path) -> tuple:
    config = path / "config.json"
    return (str(path.resolve()), config.stat().st_mtime_ns)


def _build_server(path: Path) -> ModelServer:
    from transformers import AutoTokenizer, GenerationConfig

    from .vllm_checkpoint import vllm_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    try:
        top_k = int(getattr(GenerationConfig.from_pretrained(path, local_files_only=True), "top_k", 0) or 0)
    except OSError:
        top_k = 0
    return ModelServer(checkpoint=vllm_checkpoint(path), source=path, tokenizer=tokenizer, top_k=top_k)


def server_get(checkpoint_path: str) -> ModelServer:
    """The running server for a checkpoint directory, started (and warmed) on first use.

    Raises FileNotFoundError for a missing checkpoint and EngineUnavailable when vLLM cannot serve it (then the
    transformers engine answers instead, and vLLM is not tried again for it in this process).
    """
    path = Path(checkpoint_path).absolute()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no transformers checkpoint at {path}")
    key = _key(path)
    with _servers_lock:
        if key in _unavailable:
            raise EngineUnavailable(f"vLLM cannot serve {path}")
        server = _servers.get(key)
        key_lock = _key_locks.setdefault(key, threading.Lock())
    if server is None:
        with key_lock:
            server = _servers.get(key)
            if server is None:
                try:
                    server = _build_server(path)
                    server.ensure_started()
                    warm(server)
                except Exception as exc:
                    with _servers_lock:
                        _unavailable.add(key)
                    logger.exception("vLLM cannot serve %s: the transformers engine will", path)
                    raise EngineUnavailable(str(exc)) from exc
                with _servers_lock:
                    _servers[key] = server
                _start_watchdog()
    server.ensure_started()  # a server that died since is started again (the watchdog may be on it already)
    return server


def servers() -> list[ModelServer]:
    with _servers_lock:
        return list(_servers.values())


def servers_close() -> None:
    """Stop every server of this process (worker shutdown, tests)."""
    with _servers_lock:
        running = list(_servers.values())
        _servers.clear()
        _unavailable.clear()
    for server in running:
        server.close()


def _watch() -> None:
    while True:
        time.sleep(settings.ARENA_VLLM_WATCHDOG_SECONDS)
        for server in servers():
            if server.closed or server.alive() or not server.lock.acquire(blocking=False):
                continue
            try:
                if server.process is not None and not server.closed:
                    logger.error(
                        "vLLM for %s died (exit %s): restarting it", server.checkpoint.name, server.process.returncode
                    )
                    server.stop()  # what the dead server left running (its engine core) goes with it
                    server._start()
            except Exception:
                logger.exception("vLLM for %s could not be restarted", server.checkpoint.name)
            finally:
                server.lock.release()


def _start_watchdog() -> None:
    global _watchdog_started
    with _servers_lock:
        if _watchdog_started:
            return
        _watchdog_started = True
    threading.Thread(target=_watch, name="arena-vllm-watchdog", daemon=True).start()


def warm(server: ModelServer) -> None:
    """One short answer, so the first voter's answer pays no first-request cost."""
    with server.encode_lock:
        ids = server.tokenizer("Hello", add_special_tokens=True)["input_ids"]
    payload = {"model": SERVED_NAME, "prompt": ids, "max_tokens": 4, "temperature": 0.0}
    response = httpx.post(f"{server.base_url}/v1/completions", json=payload, timeout=settings.ARENA_VLLM_START_TIMEOUT)
    response.raise_for_status()


def pool_warm(pools: list[str]) -> None:
    """Start and warm the vLLM server of every local text model of `pools` (at worker start, before the pool's
    heartbeat says it is ready). A checkpoint vLLM cannot serve is left to the transformers engine, loaded too."""
    from django.db import connection

    from models_hub.models import ModelEntry

    entries = ModelEntry.objects.filter(pool__in=pools, provider=ModelEntry.Provider.TRANSFORMERS, modality="text")
    paths = sorted({path for path in entries.values_list("checkpoint_path", flat=True) if path})
    connection.close()  # this thread keeps no database connection while models load
    for path in paths:
        try:
            server_get(path)
        except FileNotFoundError:
            logger.error("pool %s: no checkpoint at %s", ",".join(pools), path)
        except EngineUnavailable:
            from .local import model_get

            model_get(path)


def generate_vllm(
    entry: ModelEntry,
    messages: list[Message],
    *,
    on_text: OnText | None = None,
    should_stop: ShouldStop | None = None,
) -> GenerationResult:
    """Answer with the entry's local checkpoint on its vLLM server. Raises EngineUnavailable before anything was
    written when vLLM cannot serve the checkpoint."""
    from .local import prompt_token_ids

    started = time.perf_counter()
    if should_stop is not None and should_stop():
        return GenerationResult("", None, 0, None, None, finish_reason="cancelled")
    try:
        server = server_get(entry.checkpoint_path)
    except FileNotFoundError as exc:
        logger.error("model %s: %s", entry.slug, exc)
        raise GenerationError("This model's files are missing on the server.") from exc
    ids, stops = prompt_token_ids(server.tokenizer, server.encode_lock, entry, messages)
    sampling = {"temperature": 0.0} if entry.temperature <= 0 else {
        "temperature": float(entry.temperature), "top_p": float(entry.top_p), "top_k": server.top_k or -1,
    }
    return answer_vllm(
        server, ids, stops, sampling, max_new_tokens=entry.max_new_tokens, on_text=on_text, should_stop=should_stop,
        started=started, slug=entry.slug,
    )


def answer_vllm(
    server: ModelServer,
    ids: list[int],
    stops: tuple,
    sampling: dict[str, float],
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    on_text: OnText | None = None,
    should_stop: ShouldStop | None = None,
    started: float | None = None,
    slug: str = "",
) -> GenerationResult:
    """Write one answer on `server` for the prompt `ids`, streaming its text through a TextStream (`stops` end
    it). `sampling` is vLLM's temperature/top_p/top_k; any way the wait ends closes the stream, which aborts the
    request in vLLM. `started` is when the caller began (time to first token counts from it)."""
    from .local import TextStream
    from .openai_compat import stream_chunks

    started = time.perf_counter() if started is None else started
    room = settings.ARENA_VLLM_MAX_MODEL_LEN - len(ids)
    if room < 1:
        raise GenerationError("The conversation is too long for this model. Start a new battle.")
    payload: dict[str, Any] = {
        "model": SERVED_NAME,
        "prompt": ids,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max(1, min(max_new_tokens, room)),
        "skip_special_tokens": True,
        **sampling,
    }
    if min_new_tokens:
        payload["min_tokens"] = min(min_new_tokens, payload["max_tokens"])
    stream = TextStream(server.tokenizer, stops, on_text)
    reason = "stop"
    usage: dict[str, Any] = {}
    finished = False
    generating = time.perf_counter()
    deadline = generating + settings.ARENA_GENERATION_TIMEOUT
    endpoint = _Endpoint(slug, server.base_url)
    chunks = stream_chunks(endpoint, f"{server.base_url}/v1/completions", payload, {"Accept": "text/event-stream"})
    try:
        with contextlib.closing(chunks):  # closing the stream aborts the request in vLLM
            for chunk in chunks:
                if chunk is None:
                    finished = True
                    break
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if choice.get("text"):
                        stream.feed_text(choice["text"])
                    if choice.get("finish_reason"):
                        finished = True
                        reason = "length" if choice["finish_reason"] == "length" else "stop"
                if stream.stopped:
                    finished, reason = True, "stop"
                    break
                if should_stop is not None and should_stop():
                    finished, reason = True, "cancelled"
                    break
                if time.perf_counter() > deadline:
                    logger.warning("an answer ran past ARENA_GENERATION_TIMEOUT and was cancelled")
                    raise GenerationError("The model took too long to answer. Press retry to ask again.")
    except GenerationError as exc:
        if str(exc).startswith("The model took too long"):
            raise
        logger.error("model %s: the vLLM engine failed mid-answer (%s)", slug, exc)
        raise GenerationError(FAILED) from exc
    if not finished:
        logger.error("model %s: the vLLM stream ended without a finish reason", slug)
        raise GenerationError(FAILED)
    stream.end()
    ended = time.perf_counter()
    output_tokens = usage.get("completion_tokens")
    if not isinstance(output_tokens, int):  # the stream was closed before vLLM's usage chunk: count the text
        with server.encode_lock:
            output_tokens = len(server.tokenizer(stream.published, add_special_tokens=False)["input_ids"])
    return GenerationResult(
        text=stream.published,
        prompt_tokens=len(ids),
        output_tokens=output_tokens,
        time_to_first_token=None if stream.first_token_at is None else stream.first_token_at - started,
        tokens_per_second=output_tokens / (ended - generating) if output_tokens else None,
        finish_reason=reason,
    )


@dataclass
class _Endpoint:
    """What the OpenAI-compatible stream reader needs of an entry: a name for the log and the server's URL."""

    slug: str
    base_url: str
