"""The `transformers` provider: a local checkpoint directory, loaded once per process, streamed token by token.

Workers use a CUDA GPU when there is one (bfloat16) and the CPU otherwise (float32). Each loaded model has one
generation engine (`engine.py`) that decodes every concurrent answer of the process in one batch; the calling
thread waits for its own tokens, decodes them incrementally and hands each new piece of text to `on_text`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from django.conf import settings
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

from .base import GenerationError, GenerationResult, Message, OnText, ShouldStop
from .cache import ModelCache
from .engine import Engine, PromptTooLong, Request, Sampling

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class StopPattern:
    """A stop that is a pattern rather than a fixed string: `found` finds it, `partial` matches a tail of the text
    that may still grow into it (held back until it is sure)."""

    found: re.Pattern
    partial: re.Pattern
    longest: int  # characters a match can take


Stop = str | StopPattern

# A base model continues this transcript, and goes on to write the next speaker's line too, under whatever name
# it invents ("User:", "Assistant:", "Administrator:"): a new line opening with one capitalised word and a colon
# ends the answer, and that line is not part of it.
PLAIN_ROLES = {"user": "User", "assistant": "Assistant"}
PLAIN_STOP: tuple[Stop, ...] = (
    StopPattern(
        found=re.compile(r"\n[ \t]*[A-Z][A-Za-z]{0,19}:"),
        partial=re.compile(r"\n[ \t]*(?:[A-Z][A-Za-z]{0,19})?\Z"),
        longest=24,
    ),
)


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode, on `device`
    tokenizer: Any
    device: torch.device
    nbytes: int
    # Fast tokenizers may raise "Already borrowed" when two threads encode at once; decoding is safe.
    encode_lock: threading.Lock = field(default_factory=threading.Lock)
    engine: Engine | None = None  # set once loaded; the only thing that runs the model


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def checkpoint_bytes(path: Path, dtype: torch.dtype) -> int:
    """Bytes the checkpoint's parameters take once loaded as `dtype`, from the safetensors headers alone."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = 0
    for file in Path(path).glob("*.safetensors"):
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                numel += count
    return numel * itemsize


def model_bytes(loaded: LoadedModel) -> int:
    return loaded.nbytes


# transformers builds a model on the meta device under process-wide state before it fills in the weights; two
# loads at once in one process (both sides of a battle on an embedded server's threads) can leave tied weights on
# the meta device. Loading is disk- and memory-bound anyway, so one load at a time costs nothing.
_load_lock = threading.Lock()


def model_load(path: Path) -> LoadedModel:
    """Load a checkpoint directory from local files only: no machine here reaches a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device, dtype = device_and_dtype()
    started = time.perf_counter()
    with _load_lock:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).to(device).eval()
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    nbytes += sum(b.numel() * b.element_size() for b in model.buffers())
    engine = Engine(
        model,
        eos_token_ids=eos_token_ids(model, tokenizer),
        context_length=int(getattr(model.config.get_text_config(), "max_position_embeddings", None) or 2048),
        max_batch=settings.ARENA_ENGINE_MAX_BATCH,
        idle_seconds=settings.ARENA_ENGINE_IDLE_SECONDS,
        name=Path(path).name,
    )
    engine.warmup()  # here, while loading, rather than in the first voter's answer
    logger.info("loaded %s on %s in %.1f s (%.0f MB)", path, device, time.perf_counter() - started, nbytes / 2**20)
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, nbytes=nbytes, engine=engine)


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end an answer: the generation config's end-of-sequence ids, else the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return {int(i) for i in ids if i is not None and int(i) >= 0}


_cache_lock = threading.Lock()
_cache: ModelCache[LoadedModel] | None = None


def model_cache() -> ModelCache[LoadedModel]:
    """This process's model cache, created on first use with the ARENA_MODEL_CACHE_BYTES budget.

    A process-wide singleton on purpose: the whole point is that every thread of a worker shares the loaded models.
    """
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ModelCache(settings.ARENA_MODEL_CACHE_BYTES)
        return _cache


def model_get(checkpoint_path: str) -> LoadedModel:
    """The loaded model for a checkpoint directory, from this process's cache."""
    path = Path(checkpoint_path)
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"no transformers checkpoint at {path}")
    device, dtype = device_and_dtype()
    # A rebuilt checkpoint has new files: keyed by their time, it is loaded afresh instead of served stale.
    key = (str(path.resolve()), str(device), str(dtype), config.stat().st_mtime_ns)
    return model_cache().get(
        key, lambda: model_load(path), size_of=model_bytes, size_hint=checkpoint_bytes(path, dtype)
    )


def prompt_plain(system_prompt: str, messages: Sequence[Message]) -> str:
    """A plain "User: ...\\nAssistant:" transcript for a base model with no chat template."""
    lines = [system_prompt.strip() + "\n\n"] if system_prompt.strip() else []
    for message in messages:
        lines.append(f"{PLAIN_ROLES[message['role']]}: {message['content'].strip()}\n")
    return "".join(lines) + "Assistant:"


def prompt_token_ids(
    tokenizer: Any, encode_lock: threading.Lock, entry: ModelEntry, messages: Sequence[Message]
) -> tuple[list[int], tuple[Stop, ...]]:
    """The prompt's token ids for `entry` (its chat template, or a plain transcript) and the stops that end the
    answer. Shared by both engines, so a prompt is the same tokens whichever one answers."""
    use_template = entry.prompt_format == "chat" and bool(getattr(tokenizer, "chat_template", None))
    with encode_lock:
        if use_template:
            chat = [{"role": "system", "content": entry.system_prompt}] if entry.system_prompt.strip() else []
            chat += [{"role": m["role"], "content": m["content"]} for m in messages]
            text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            # The template writes the special tokens itself.
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            stops: tuple[Stop, ...] = ()
        else:
            ids = tokenizer(prompt_plain(entry.system_prompt, messages))["input_ids"]
            stops = PLAIN_STOP
    return list(ids), stops


def prompt_ids(loaded: LoadedModel, entry: ModelEntry, messages: Sequence[Message]) -> tuple[torch.Tensor, tuple[Stop, ...]]:
    """The prompt's token ids (shape [1, n]) and the strings that end the answer."""
    ids, stops = prompt_token_ids(loaded.tokenizer, loaded.encode_lock, entry, messages)
    return torch.tensor([ids], dtype=torch.long, device=loaded.device), stops


class TextStream(BaseStreamer):
    """Receives the answer's tokens as they come and publishes new text.

    The published text is the answer as it will finally read: leading and trailing whitespace trimmed, cut
    before any stop, so the pieces given to `on_text` always join to the final text. Text that may yet turn out
    to be a stop, trailing whitespace or half a UTF-8 character is held back until it is sure.

    Incremental: each token decodes a window of a few tokens (the ones since the last complete character, and
    one before them for the tokenizer's spacing), and only the unpublished tail is searched for stops, so an
    answer of n tokens costs O(n), not O(n^2). `feed` takes generated ids; `put` is the `generate()` streamer
    interface, whose first call is the prompt.
    """

    def __init__(self, tokenizer: Any, stops: tuple[Stop, ...], on_text: OnText | None) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.on_text = on_text
        self.ids: list[int] = []
        self.first_token_at: float | None = None
        self.stopped = False  # a stop appeared: whoever generates should end the answer
        self._prompt_seen = False
        self._decoded = ""  # all text decoded so far, stops included
        self._prefix = 0  # ids[_prefix:_read] decode to the last piece of _decoded (spacing context)
        self._read = 0
        self._stop_at: int | None = None  # index in _decoded where the first stop begins
        self._searched = 0  # _decoded before this index holds no stop start
        self._published_to = 0  # _decoded[_published_from:_published_to] is published
        self._published_from: int | None = None
        self._pieces: list[str] = []
        lengths = [len(stop) if isinstance(stop, str) else stop.longest for stop in stops]
        self._lookback = max(lengths, default=0)

    @property
    def published(self) -> str:
        return "".join(self._pieces)

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() hands over the prompt first
            self._prompt_seen = True
            return
        self.feed(int(i) for i in value.reshape(-1).tolist())

    def feed(self, ids: Any) -> None:
        if self.stopped:
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.ids.extend(ids)
        self._decode(final=False)
        self._publish(final=False)

    def feed_text(self, piece: str) -> None:
        """Text decoded elsewhere (an engine that streams text, not ids): trimmed, cut at stops, published."""
        if self.stopped or not piece:
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self._decoded += piece
        self._find_stop()
        self._publish(final=False)

    def end(self) -> None:
        if not self.stopped:
            self._decode(final=True)
        self._publish(final=True)

    def text(self) -> str:
        """The answer so far, whitespace-trimmed and cut at the first stop."""
        end = len(self._decoded) if self._stop_at is None else self._stop_at
        return self._decoded[:end].strip()

    def _decode(self, *, final: bool) -> None:
        decode = self.tokenizer.decode
        options = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
        before = decode(self.ids[self._prefix : self._read], **options) if self._read > self._prefix else ""
        after = decode(self.ids[self._prefix :], **options)
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            self._decoded += after[len(before) :]
            self._prefix, self._read = self._read, len(self.ids)
        self._find_stop()

    def _find_stop(self) -> None:
        if self._stop_at is not None or not self.stops:
            return
        start = max(0, self._searched - self._lookback)
        found = []
        for stop in self.stops:
            at = self._decoded.find(stop, start) if isinstance(stop, str) else -1
            if isinstance(stop, StopPattern):
                match = stop.found.search(self._decoded, start)
                at = match.start() if match else -1
            if at >= 0:
                found.append(at)
        self._searched = len(self._decoded)
        if found:
            self._stop_at = min(found)
            self.stopped = True

    def _held_back(self, end: int) -> int:
        """How far before `end` the text is sure: not the start of a stop still growing."""
        text = self._decoded
        sure = end
        for stop in self.stops:
            if isinstance(stop, str):
                for length in range(min(len(stop) - 1, end), 0, -1):
                    if text.endswith(stop[:length], 0, end):
                        sure = min(sure, end - length)
                        break
            else:
                window = max(0, end - stop.longest)
                newline = text.rfind("\n", window, end)
                if newline >= 0 and stop.partial.match(text, newline, end):
                    sure = min(sure, newline)
        return sure

    def _publish(self, *, final: bool) -> None:
        text = self._decoded
        end = len(text) if self._stop_at is None else self._stop_at
        if self._published_from is None:  # leading whitespace is never published
            start = 0
            while start < end and text[start].isspace():
                start += 1
            if start == end:
                return
            self._published_from = self._published_to = start
        if not (final or self.stopped):
            end = self._held_back(end)
        while end > self._published_to and text[end - 1].isspace():
            end -= 1
        if end > self._published_to:
            piece = text[self._published_to : end]
            self._published_to = end
            self._pieces.append(piece)
            if self.on_text is not None:
                self.on_text(piece)


def sampling_of(entry: ModelEntry, loaded: LoadedModel) -> Sampling:
    """The entry's sampling settings; top-k comes from the checkpoint's generation config, as generate() did."""
    if entry.temperature <= 0:
        return Sampling()
    top_k = getattr(loaded.model.generation_config, "top_k", None) or 0
    return Sampling(temperature=float(entry.temperature), top_p=float(entry.top_p), top_k=int(top_k))


def answer(
    loaded: LoadedModel,
    input_ids: Sequence[int],
    stops: tuple[Stop, ...],
    sampling: Sampling,
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    on_text: OnText | None = None,
    should_stop: ShouldStop | None = None,
    started: float | None = None,
) -> GenerationResult:
    """Write one answer through the loaded model's engine, waiting in this thread for its tokens.

    `should_stop` is polled here between tokens, and at least every 0.5 s while none comes; an answer still
    running ARENA_GENERATION_TIMEOUT seconds after it was handed to the engine is cancelled and fails. Whatever ends the wait (an exception too)
    cancels the request, so the engine never writes for a caller that left. `started` is when the caller began
    (time to first token counts from it).
    """
    started = time.perf_counter() if started is None else started
    engine = loaded.engine
    assert engine is not None
    request = Request(
        prompt=list(input_ids),
        max_new_tokens=max(1, min(max_new_tokens, engine.context_length - len(input_ids))),
        sampling=sampling,
        min_new_tokens=min_new_tokens,
    )
    stream = TextStream(loaded.tokenizer, stops, on_text)
    generating = time.perf_counter()
    deadline = generating + settings.ARENA_GENERATION_TIMEOUT  # the answer itself, not the model's loading
    try:
        engine.submit(request)
    except PromptTooLong as exc:
        logger.warning("prompt too long: %s", exc)
        raise GenerationError("The conversation is too long for this model. Start a new battle.") from exc
    reason = "stop"
    try:
        while True:
            try:
                # Not a short timeout: every wake-up of a waiting thread takes the GIL from the engine's thread.
                kind, value = request.events.get(timeout=0.5)
            except queue.Empty:
                kind = value = None
            if kind == "tokens":
                stream.feed(value)
                if stream.stopped:
                    break
            elif kind == "end":
                reason = value
                break
            elif kind == "error":
                raise value
            if should_stop is not None and should_stop():
                reason = "cancelled"
                break
            if time.perf_counter() > deadline:
                logger.warning("an answer ran past ARENA_GENERATION_TIMEOUT and was cancelled")
                raise GenerationError("The model took too long to answer. Press retry to ask again.")
    finally:
        request.cancel()
    stream.end()
    finished = time.perf_counter()
    output_tokens = len(stream.ids)
    return GenerationResult(
        text=stream.published,
        prompt_tokens=len(input_ids),
        output_tokens=output_tokens,
        time_to_first_token=None if stream.first_token_at is None else stream.first_token_at - started,
        tokens_per_second=output_tokens / (finished - generating) if output_tokens else None,
        finish_reason=reason,
    )


def generate_local(
    entry: ModelEntry,
    messages: Sequence[Message],
    *,
    on_text: OnText | None = None,
    should_stop: ShouldStop | None = None,
) -> GenerationResult:
    """Answer with the entry's local checkpoint."""
    started = time.perf_counter()
    if should_stop is not None and should_stop():
        return GenerationResult("", None, 0, None, None, finish_reason="cancelled")
    try:
        loaded = model_get(entry.checkpoint_path)
    except FileNotFoundError as exc:
        logger.error("model %s: %s", entry.slug, exc)
        raise GenerationError("This model's files are missing on the server.") from exc
    except (OSError, ValueError) as exc:
        logger.exception("model %s failed to load from %s", entry.slug, entry.checkpoint_path)
        raise GenerationError("This model could not be loaded on the server.") from exc
    input_ids, stops = prompt_ids(loaded, entry, messages)
    return answer(
        loaded,
        input_ids[0].tolist(),
        stops,
        sampling_of(entry, loaded),
        max_new_tokens=entry.max_new_tokens,
        on_text=on_text,
        should_stop=should_stop,
        started=started,
    )
