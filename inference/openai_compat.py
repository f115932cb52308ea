"""The `openai` provider: an OpenAI-compatible /v1/chat/completions endpoint, streamed as server-sent events."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from models_hub.endpoints import api_key_env_problem, base_url_problem

from .base import GenerationError, GenerationResult, Message, OnText, ShouldStop

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

logger = logging.getLogger(__name__)

# Voter-facing reasons: they name no model, host or URL (battles are anonymous).
UNREACHABLE = "The model's server could not be reached."
TOO_SLOW = "The model's server took too long to answer."
BROKEN = "The connection to the model's server broke before the answer was complete."
GARBAGE = "The model's server sent a reply that could not be understood."
REFUSED = "The model's server reported an error."
NO_KEY = "The model's API key is not configured on the server."
NOT_ALLOWED = "This model's server or API key is not allowed by the server's configuration."


def http_error(status: int) -> str:
    return f"The model's server answered with an error (HTTP {status})."


class EndpointHTTPError(GenerationError):
    """The endpoint answered with an HTTP error status: the one detail of a failure an operator's test shows."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def endpoint_request(entry: ModelEntry, path: str, *, accept: str) -> tuple[str, dict[str, str]]:
    """(url, headers) for a call to `entry`'s endpoint, checked against the deployment's rules right before the
    call: an entry that names a URL or a key variable the deployment does not allow is refused, whether it came
    through the admin form or straight into the database (models_hub/endpoints.py)."""
    problem = base_url_problem(entry.base_url) or api_key_env_problem(entry.api_key_env)
    if problem:
        raise GenerationError(NOT_ALLOWED) from PermissionError(problem)
    headers = {"Accept": accept}
    if entry.api_key_env:
        key = os.environ.get(entry.api_key_env, "")
        if not key:
            raise GenerationError(NO_KEY) from LookupError(f"environment variable {entry.api_key_env} is not set")
        headers["Authorization"] = f"Bearer {key}"
    return entry.base_url.rstrip("/") + path, headers


def transport_failure(exc: httpx.HTTPError) -> str:
    """The voter-safe text for an HTTP failure on the way to or from an endpoint (chat or speech)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return UNREACHABLE
    if isinstance(exc, httpx.TimeoutException):
        return TOO_SLOW
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return BROKEN
    return UNREACHABLE


def endpoint_timeout() -> httpx.Timeout:
    # The read timeout bounds the wait for each piece of the stream, not the whole answer.
    return httpx.Timeout(
        connect=settings.ARENA_OPENAI_CONNECT_TIMEOUT,
        read=settings.ARENA_OPENAI_READ_TIMEOUT,
        write=10.0,
        pool=10.0,
    )


_clients: dict[tuple[int, str, float, float], httpx.Client] = {}
_clients_lock = threading.Lock()


def endpoint_client(base_url: str) -> httpx.Client:
    """The one HTTP client of this process for an endpoint: its TLS context and kept-alive connections are made
    once, not per answer (building an SSL context costs far more than an instant answer). Keyed by process id
    too, since a forked worker child must not share its parent's sockets. httpx clients are thread-safe."""
    key = (os.getpid(), base_url.rstrip("/"), settings.ARENA_OPENAI_CONNECT_TIMEOUT, settings.ARENA_OPENAI_READ_TIMEOUT)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = httpx.Client(timeout=endpoint_timeout())
        return client


@dataclass
class ServerSentEvent:
    event: str
    data: str


def sse_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Parse a text/event-stream body, given line by line (line endings removed), per the WHATWG rules:
    `data:` lines accumulate (joined by newlines) until a blank line dispatches the event, `:` starts a comment,
    one space after the colon is dropped, and an event with no data is not dispatched."""
    event, data = "", []
    for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:  # a stream that ends without the final blank line still delivered its last event
        yield ServerSentEvent(event or "message", "\n".join(data))


def _request_messages(entry: ModelEntry, messages: Sequence[Message]) -> list[Message]:
    chat = [{"role": "system", "content": entry.system_prompt}] if entry.system_prompt.strip() else []
    return chat + [{"role": m["role"], "content": m["content"]} for m in messages]


def _fail(entry: ModelEntry, reason: str, detail: object) -> GenerationError:
    logger.warning("model %s at %s: %s (%s)", entry.slug, entry.base_url, reason, detail)
    return GenerationError(reason)


def _http_fail(entry: ModelEntry, status: int, detail: object) -> EndpointHTTPError:
    logger.warning("model %s at %s: HTTP %s (%s)", entry.slug, entry.base_url, status, detail)
    return EndpointHTTPError(http_error(status), status=status)


def stream_chunks(
    entry: ModelEntry, url: str, payload: dict[str, Any], headers: dict[str, str]
) -> Iterator[dict[str, Any] | None]:
    """POST `payload` to `url` and yield each JSON chunk of its event stream, then None for [DONE].

    A stream that ends without [DONE] just ends (some servers stop after the finish reason): the caller judges.
    Every failure is a GenerationError with a voter-safe message (the detail goes to the log). Closing the
    generator early closes the connection, which makes a server such as vLLM abort the request.
    """
    try:
        with endpoint_client(entry.base_url).stream("POST", url, json=payload, headers=headers) as response:
            if response.status_code >= 400:
                body = response.read()[:1000]
                raise _http_fail(entry, response.status_code, body.decode("utf-8", "replace"))
            for event in sse_events(response.iter_lines()):
                if event.data.strip() == "[DONE]":
                    yield None
                    return
                try:
                    chunk = json.loads(event.data)
                except ValueError as exc:
                    raise _fail(entry, GARBAGE, f"not JSON: {event.data[:200]!r}") from exc
                if not isinstance(chunk, dict):
                    raise _fail(entry, GARBAGE, f"not an object: {event.data[:200]!r}")
                if event.event == "error" or "error" in chunk:
                    raise _fail(entry, REFUSED, chunk.get("error", chunk))
                for choice in chunk.get("choices") or []:
                    if not isinstance(choice, dict):
                        raise _fail(entry, GARBAGE, f"bad choice: {choice!r}")
                yield chunk
    except UnicodeDecodeError as exc:
        raise _fail(entry, GARBAGE, repr(exc)) from exc
    except httpx.HTTPError as exc:
        raise _fail(entry, transport_failure(exc), repr(exc)) from exc


def generate_openai(
    entry: ModelEntry,
    messages: Sequence[Message],
    *,
    on_text: OnText | None = None,
    should_stop: ShouldStop | None = None,
) -> GenerationResult:
    try:
        url, headers = endpoint_request(entry, "/chat/completions", accept="text/event-stream")
    except GenerationError as exc:
        raise _fail(entry, str(exc), exc.__cause__) from exc.__cause__
    payload: dict[str, Any] = {
        "model": entry.remote_model,
        "messages": _request_messages(entry, messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": entry.max_new_tokens,
        "temperature": entry.temperature,
        "top_p": entry.top_p,
    }
    started = time.perf_counter()
    pieces: list[str] = []
    first_at: float | None = None
    usage: dict[str, Any] = {}
    finished_cleanly = False
    finish_reason = "stop"
    chunks = stream_chunks(entry, url, payload, headers)
    with contextlib.closing(chunks):
        for chunk in chunks:
            if chunk is None:
                finished_cleanly = True
                break
            if should_stop is not None and should_stop():
                finished_cleanly = True
                finish_reason = "cancelled"
                break
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if first_at is None:
                        first_at = time.perf_counter()
                    pieces.append(piece)
                    if on_text is not None:
                        on_text(piece)
                if choice.get("finish_reason"):
                    # Some servers end the stream here without sending [DONE].
                    finished_cleanly = True
                    finish_reason = "length" if choice["finish_reason"] == "length" else "stop"
    if not finished_cleanly:
        raise _fail(entry, BROKEN, "the stream ended without [DONE] or a finish reason")
    ended = time.perf_counter()
    output_tokens = usage.get("completion_tokens")
    prompt_tokens = usage.get("prompt_tokens")
    return GenerationResult(
        text="".join(pieces),
        prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
        output_tokens=output_tokens if isinstance(output_tokens, int) else None,
        time_to_first_token=None if first_at is None else first_at - started,
        tokens_per_second=output_tokens / (ended - started) if isinstance(output_tokens, int) and output_tokens else None,
        finish_reason=finish_reason,
    )
