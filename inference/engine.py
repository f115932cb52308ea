"""One generation engine per loaded model: every answer a process is writing with that model decodes in one batch.

Continuous batching with a step loop of our own. One background thread per engine owns the model and the running
batch: the requests that arrive while others run have their prompts prefilled together at the next step boundary
(one left-padded forward; one forward each if that fails, so a bad request fails alone), their KV caches
left-padded to the batch's length and joined to it, and it leaves the batch when it ends (end of
sequence, its token limit, or cancellation), so nobody waits for the longest answer. Each request has its own
sampling settings and limits; a request that fails on its own (its prefill) fails alone, and a step that fails
fails the requests of that step only, after which the engine carries on with the next ones.

Why not transformers' `ContinuousBatchingManager`: on the CPU here it served 4 concurrent streams at about a third
of a plain batched decode (figures in benchmarks/results/inference.md), first tokens took seconds, and it has one
`do_sample` for the whole manager and no stop strings; this loop is a plain batched `forward` with a DynamicCache.

Threads: `submit` may be called from any thread; tokens come back on the request's own queue, so the caller's
thread decodes and publishes its text, polls its own cancellation and keeps its own database connection. The
engine thread exits after `idle_seconds` with nothing to do (an evicted model is then freed) and starts again on
the next request.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

logger = logging.getLogger(__name__)


class PromptTooLong(ValueError):
    """The prompt leaves no room for an answer in the model's context."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 or below: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass(eq=False)
class Request:
    """One answer to write. The engine puts events on `events`, in order: ("tokens", [ids]) for each new token,
    then exactly one of ("end", "stop" | "length" | "cancelled") or ("error", exception)."""

    prompt: list[int]
    max_new_tokens: int
    sampling: Sampling = Sampling()
    min_new_tokens: int = 0  # end-of-sequence tokens before this many do not end the answer
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    generated: int = 0
    cancelled: bool = False  # set from any thread; the engine drops the request at the next step

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Batch:
    rows: list[Request]
    cache: DynamicCache
    mask: torch.Tensor  # [rows, kv length], 1 for a real token, 0 for left padding
    last: torch.Tensor  # [rows, 1], the token each row feeds next
    positions: torch.Tensor  # [rows], the position of that token (real tokens before it)


def _layers(cache: DynamicCache) -> list[Any]:
    return list(cache.layers)


def _merge(parts: list[_Batch]) -> _Batch:
    """One batch from several, each left-padded to the longest kv length."""
    if len(parts) == 1:
        return parts[0]
    length = max(part.mask.shape[1] for part in parts)
    merged = parts[0].cache
    for index, layer in enumerate(_layers(merged)):
        keys, values = [], []
        for part in parts:
            other = _layers(part.cache)[index]
            pad = length - part.mask.shape[1]
            keys.append(F.pad(other.keys, (0, 0, pad, 0)) if pad else other.keys)
            values.append(F.pad(other.values, (0, 0, pad, 0)) if pad else other.values)
        layer.keys, layer.values = torch.cat(keys), torch.cat(values)
    return _Batch(
        rows=[row for part in parts for row in part.rows],
        cache=merged,
        mask=torch.cat([F.pad(part.mask, (length - part.mask.shape[1], 0)) for part in parts]),
        last=torch.cat([part.last for part in parts]),
        positions=torch.cat([part.positions for part in parts]),
    )


def _keep(batch: _Batch, keep: list[int]) -> _Batch | None:
    """The batch with only the rows at `keep`, and the left padding no row needs any more cut off."""
    if not keep:
        return None
    if len(keep) == len(batch.rows):
        return batch
    index = torch.tensor(keep, device=batch.mask.device)
    mask = batch.mask.index_select(0, index)
    start = int(mask.any(0).int().argmax())
    for layer in _layers(batch.cache):
        layer.keys = layer.keys.index_select(0, index)[:, :, start:]
        layer.values = layer.values.index_select(0, index)[:, :, start:]
    return _Batch(
        rows=[batch.rows[i] for i in keep],
        cache=batch.cache,
        mask=mask[:, start:],
        last=batch.last.index_select(0, index),
        positions=batch.positions.index_select(0, index),
    )


def sample(logits: torch.Tensor, settings: list[Sampling]) -> torch.Tensor:
    """The next token of each row of `logits` ([rows, vocab]) under that row's settings; returns [rows]."""
    logits = logits.float()
    chosen = logits.argmax(-1)
    rows = [i for i, s in enumerate(settings) if not s.greedy]
    if not rows:
        return chosen
    picked = logits[rows]
    vocab = picked.shape[-1]
    ks = [settings[i].top_k if 0 < settings[i].top_k < vocab else vocab for i in rows]
    top, where = picked.topk(max(ks), dim=-1)  # sorted, highest first
    temperature = torch.tensor([settings[i].temperature for i in rows], device=logits.device)[:, None]
    top = top / temperature
    rank = torch.arange(top.shape[-1], device=logits.device)[None, :]
    top = top.masked_fill(rank >= torch.tensor(ks, device=logits.device)[:, None], float("-inf"))
    probs = top.softmax(-1)
    top_p = torch.tensor([settings[i].top_p for i in rows], device=logits.device)[:, None]
    # Keep the smallest set of most likely tokens whose mass reaches top_p (always at least the first).
    beyond = probs.cumsum(-1) - probs >= top_p
    beyond[:, 0] = False
    probs = probs.masked_fill(beyond, 0.0)
    draw = torch.multinomial(probs, 1)
    chosen[rows] = where.gather(-1, draw).squeeze(-1)
    return chosen


class Engine:
    """The batching engine of one loaded model. `submit` from any thread; see the module docstring."""

    def __init__(
        self,
        model: Any,
        *,
        eos_token_ids: Iterable[int],
        context_length: int,
        max_batch: int = 64,
        idle_seconds: float = 5.0,
        name: str = "model",
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.eos_token_ids = frozenset(int(i) for i in eos_token_ids)
        self.context_length = context_length
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self.name = name
        self._cond = threading.Condition()
        self._pending: deque[Request] = deque()
        self._thread: threading.Thread | None = None
        self.running = 0  # rows in the batch now
        self.peak_batch = 0  # the most rows one step decoded, since the engine was made
        self.steps = 0

    def submit(self, request: Request) -> None:
        if len(request.prompt) + 1 > self.context_length:
            raise PromptTooLong(f"{len(request.prompt)} prompt tokens, context {self.context_length}")
        if not request.prompt:
            raise ValueError("an empty prompt")
        with self._cond:
            self._pending.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"arena-engine-{self.name}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def answer(self, request: Request, timeout: float = 600.0) -> tuple[list[int], str]:
        """Submit and wait: the generated ids and why they ended (for warm-up and tests)."""
        self.submit(request)
        ids: list[int] = []
        while True:
            kind, value = request.events.get(timeout=timeout)
            if kind == "tokens":
                ids.extend(value)
            elif kind == "end":
                return ids, value
            else:
                raise value

    def warmup(self) -> None:
        """One short answer, so that the first voter does not pay for first-call allocations (and, on a GPU, for
        the CUDA context and kernel selection)."""
        prompt = [next(iter(self.eos_token_ids), 0)] * 4
        self.answer(Request(prompt=prompt, max_new_tokens=3, min_new_tokens=3))

    # The engine thread only, from here on.

    def _run(self) -> None:
        batch: _Batch | None = None
        try:
            with torch.inference_mode():
                while True:
                    with self._cond:
                        if not self._pending and batch is None:
                            self._cond.wait(self.idle_seconds)
                            if not self._pending:
                                self._thread = None
                                return
                        room = self.max_batch - (len(batch.rows) if batch else 0)
                        joining = [self._pending.popleft() for _ in range(min(room, len(self._pending)))]
                    batch = self._step(batch, joining)
        except BaseException:  # never leave a caller waiting on a dead thread
            logger.exception("generation engine for %s stopped", self.name)
            with self._cond:
                self._thread = None
                left = list(self._pending) + (batch.rows if batch else [])
                self._pending.clear()
            for request in left:
                request.events.put(("error", RuntimeError("the generation engine stopped")))
            raise

    def _step(self, batch: _Batch | None, joining: list[Request]) -> _Batch | None:
        if batch is not None:
            batch = self._drop_cancelled(batch)
        parts = [batch] if batch is not None else []
        live = []
        for request in joining:
            if request.cancelled:
                request.events.put(("end", "cancelled"))
            else:
                live.append(request)
        groups = [live]
        if len(live) > 1:
            try:
                part = self._prefill(live)
            except Exception:
                logger.info("a joint prefill of %d prompts failed on %s; prefilling one by one", len(live), self.name)
                groups = [[request] for request in live]
            else:
                groups = []
                if part is not None:
                    parts.append(part)
        for group in groups:
            if not group:
                continue
            try:
                part = self._prefill(group)
            except Exception as exc:
                logger.exception("prefill failed on %s", self.name)
                group[0].events.put(("error", exc))
                continue
            if part is not None:
                parts.append(part)
        if not parts:
            return None
        batch = _merge(parts)
        self.running = len(batch.rows)
        if self.running > self.peak_batch:
            self.peak_batch = self.running
            logger.info("engine %s: %d answers in one batch", self.name, self.running)
        try:
            return self._decode(batch)
        except Exception as exc:
            logger.exception("a decode step of %d rows failed on %s", len(batch.rows), self.name)
            for request in batch.rows:
                request.events.put(("error", exc))
            self.running = 0
            return None

    def _drop_cancelled(self, batch: _Batch) -> _Batch | None:
        keep = []
        for i, request in enumerate(batch.rows):
            if request.cancelled:
                request.events.put(("end", "cancelled"))
            else:
                keep.append(i)
        return _keep(batch, keep)

    def _prefill(self, requests: list[Request]) -> _Batch | None:
        """Prefill `requests` in one forward, left-padded to the longest prompt, and hand each its first token:
        the batch of those that go on (None if none). Raises before any token is handed out if the forward fails."""
        lengths = [len(r.prompt) for r in requests]
        width = max(lengths)
        ids = torch.tensor([[0] * (width - n) + r.prompt for r, n in zip(requests, lengths)], device=self.device)
        mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths], dtype=torch.long, device=self.device)
        cache = DynamicCache()  # full layers only: sliding-window models get their window from the mask
        if len(requests) == 1:
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        else:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
            # Padding rows attend to nothing; zero whatever their keys and values hold, as _merge pads with zeros.
            pad = (mask == 0)[:, None, :, None]
            for layer in _layers(cache):
                layer.keys = layer.keys.masked_fill(pad, 0.0)
                layer.values = layer.values.masked_fill(pad, 0.0)
        tokens = sample(out.logits[:, -1, :], [r.sampling for r in requests]).tolist()
        batch = _Batch(
            rows=list(requests),
            cache=cache,
            mask=mask,
            last=torch.tensor(tokens, device=self.device)[:, None],
            positions=torch.tensor(lengths, device=self.device),
        )
        keep = [i for i, (r, token, n) in enumerate(zip(requests, tokens, lengths))
                if not self._emit(r, token, position=n)]
        return _keep(batch, keep)

    def _decode(self, batch: _Batch) -> _Batch | None:
        rows = len(batch.rows)
        mask = torch.cat([batch.mask, torch.ones((rows, 1), dtype=batch.mask.dtype, device=self.device)], dim=1)
        out = self.model(
            input_ids=batch.last,
            attention_mask=mask,
            position_ids=batch.positions[:, None],
            past_key_values=batch.cache,
            use_cache=True,
        )
        self.steps += 1
        tokens = sample(out.logits[:, -1, :], [request.sampling for request in batch.rows]).tolist()
        batch.mask = mask
        batch.last = torch.tensor(tokens, device=self.device)[:, None]
        batch.positions = batch.positions + 1
        keep = [
            i for i, (request, token, position) in enumerate(zip(batch.rows, tokens, batch.positions.tolist()))
            if not self._emit(request, token, position=position)
        ]
        kept = _keep(batch, keep)
        self.running = len(kept.rows) if kept else 0
        return kept

    def _emit(self, request: Request, token: int, *, position: int) -> bool:
        """Hand `token` (at `position`) to its request; True when that ended the request."""
        request.generated += 1
        request.events.put(("tokens", [token]))
        if token in self.eos_token_ids and request.generated >= request.min_new_tokens:
            request.events.put(("end", "stop"))
            return True
        if request.generated >= request.max_new_tokens or position + 1 >= self.context_length:
            request.events.put(("end", "length"))
            return True
        return False
