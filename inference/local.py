"""The `transformers` provider: a local checkpoint directory, loaded once per process, streamed token by token.

Workers use a CUDA GPU when there is one (bfloat16) and the CPU otherwise (float32). Generation runs in the
calling thread; a streamer decodes the new tokens as they come and hands each new piece of text to `on_text`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from django.conf import settings
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .base import GenerationError, GenerationResult, Message, OnText, ShouldStop
from .cache import ModelCache

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

logger = logging.getLogger(__name__)

# A base model continues this transcript; it would happily write the user's next line too, so that ends it.
PLAIN_ROLES = {"user": "User", "assistant": "Assistant"}
PLAIN_STOP = ("\nUser:",)


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode, on `device`
    tokenizer: Any
    device: torch.device
    nbytes: int
    # Fast tokenizers may raise "Already borrowed" when two threads encode at once; decoding is safe.
    encode_lock: threading.Lock = field(default_factory=threading.Lock)


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
    logger.info("loaded %s on %s in %.1f s (%.0f MB)", path, device, time.perf_counter() - started, nbytes / 2**20)
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, nbytes=nbytes)


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


def prompt_ids(loaded: LoadedModel, entry: ModelEntry, messages: Sequence[Message]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The prompt's token ids (shape [1, n]) and the strings that end the answer."""
    tokenizer = loaded.tokenizer
    use_template = entry.prompt_format == "chat" and bool(getattr(tokenizer, "chat_template", None))
    with loaded.encode_lock:
        if use_template:
            chat = [{"role": "system", "content": entry.system_prompt}] if entry.system_prompt.strip() else []
            chat += [{"role": m["role"], "content": m["content"]} for m in messages]
            text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            # The template writes the special tokens itself.
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            stops: tuple[str, ...] = ()
        else:
            ids = tokenizer(prompt_plain(entry.system_prompt, messages), return_tensors="pt")["input_ids"]
            stops = PLAIN_STOP
    return ids.to(loaded.device), stops


class TextStream(BaseStreamer):
    """Receives the tokens `generate()` produces, in the generating thread, and publishes new text.

    The published text is the answer as it will finally read: leading and trailing whitespace trimmed, cut
    before any stop string, so the pieces given to `on_text` always join to the final text. Text that may yet
    turn out to be a stop string, trailing whitespace or half a UTF-8 character is held back until it is sure.
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], on_text: OnText | None) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.on_text = on_text
        self.ids: list[int] = []
        self.published = ""
        self.first_token_at: float | None = None
        self.stopped = False  # a stop string appeared: the stopping criterion ends generation
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() hands over the prompt first
            self._prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.ids.extend(int(i) for i in value.reshape(-1).tolist())
        self._publish(final=False)

    def end(self) -> None:
        self._publish(final=True)

    def text(self) -> str:
        """The answer so far, whitespace-trimmed and cut at the first stop string."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        text = text.lstrip()
        for stop in self.stops:
            at = text.find(stop)
            if at >= 0:
                self.stopped = True
                text = text[:at]
        return text

    def _publish(self, *, final: bool) -> None:
        text = self.text()
        if final or self.stopped:
            ready = text.rstrip()
        else:
            ready = text.rstrip("\ufffd")
            for stop in self.stops:
                for length in range(min(len(stop) - 1, len(ready)), 0, -1):
                    if ready.endswith(stop[:length]):
                        ready = ready[:-length]
                        break
            ready = ready.rstrip()
        if len(ready) > len(self.published) and ready.startswith(self.published):
            piece = ready[len(self.published) :]
            self.published = ready
            if self.on_text is not None:
                self.on_text(piece)


class _Stop(StoppingCriteria):
    def __init__(self, stream: TextStream, should_stop: ShouldStop | None) -> None:
        self.stream = stream
        self.should_stop = should_stop
        self.cancelled = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
        done = self.cancelled or self.stream.stopped
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def generate_local(
    entry: ModelEntry,
    messages: Sequence[Message],
    *,
    on_text: OnText | None = None,
    should_stop: ShouldStop | None = None,
    fixed_new_tokens: int | None = None,
) -> GenerationResult:
    """Answer with the entry's local checkpoint.

    `fixed_new_tokens` is for benchmarks: exactly that many tokens, past end-of-sequence and stop strings.
    """
    started = time.perf_counter()
    if should_stop is not None and should_stop():
        return GenerationResult("", None, 0, None, None)
    try:
        loaded = model_get(entry.checkpoint_path)
    except FileNotFoundError as exc:
        logger.error("model %s: %s", entry.slug, exc)
        raise GenerationError("This model's files are missing on the server.") from exc
    except (OSError, ValueError) as exc:
        logger.exception("model %s failed to load from %s", entry.slug, entry.checkpoint_path)
        raise GenerationError("This model could not be loaded on the server.") from exc
    input_ids, stops = prompt_ids(loaded, entry, messages)
    length = {"max_new_tokens": entry.max_new_tokens}
    if fixed_new_tokens is not None:
        stops = ()
        length = {"max_new_tokens": fixed_new_tokens, "min_new_tokens": fixed_new_tokens}
    stream = TextStream(loaded.tokenizer, stops, on_text)
    stop = _Stop(stream, should_stop)
    sampling: dict[str, Any]
    if entry.temperature <= 0:
        sampling = {"do_sample": False}
    else:
        sampling = {"do_sample": True, "temperature": entry.temperature, "top_p": entry.top_p}
    tokenizer = loaded.tokenizer
    generating = time.perf_counter()
    with torch.inference_mode():
        loaded.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            **length,
            streamer=stream,
            stopping_criteria=StoppingCriteriaList([stop]),
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            **sampling,
        )
    finished = time.perf_counter()
    output_tokens = len(stream.ids)
    return GenerationResult(
        text=stream.published,
        prompt_tokens=int(input_ids.shape[1]),
        output_tokens=output_tokens,
        time_to_first_token=None if stream.first_token_at is None else stream.first_token_at - started,
        tokens_per_second=output_tokens / (finished - generating) if output_tokens else None,
    )
