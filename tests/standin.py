"""A small OpenAI-compatible streaming endpoint on loopback: the fast stand-in model for battle, load and fault
tests, where the subject is the web, database and dispatch path rather than a model's weights.

The requested model name picks the behaviour:
- `echo`: streams "You said: <last user message>" word by word; `echo-N` streams N words of filler.
- `history`: streams how many user messages the conversation held, e.g. "turns=2".
- `script`: answers with markdown holding a script tag and an onerror attribute.
- `leak`: names itself ("I am the Leaky model by Leakcorp").
- `slow`: streams one word every 0.2 s, 20 words.
- `hang`: sends headers then nothing.
- `garbage`: answers 200 with a body that is not server-sent events.
- `fail`: answers HTTP 500 with an error that names the requested model.
- `style-<word>`: a short answer in a recognisable style, opening "<Word> here." (simulated voters tell the
  models apart by it, as a rigging voter would).
Every model stops at the request's `max_tokens` pieces, as a real server stops at its token limit, and then says
`finish_reason: "length"`; otherwise `"stop"`.

The provider's own tests (tests/inference/test_openai.py) use the same server for the edges of the protocol:
- `hello`: a keep-alive comment, "Hel" "lo" ", vot" "er!", a finish chunk, then usage in a chunk of no choices.
- `cutoff`: "Once upon a", then finish_reason "length" (the server's token limit).
- `multiline`: one event over two data lines, CRLF line endings. `auth`: answers with the Authorization header.
- `inerror`: an error object inside the stream. `badevent`: a good chunk, then a data line that is not JSON.
- `cut`: promises 100,000 bytes and hangs up after one chunk. `unfinished`: one chunk, then a clean end with no
  finish reason and no [DONE]. `stall`: one chunk, then nothing for 30 s. `long`: 1000 words, one per 5 ms.

A behaviour can also be named in the path, before /v1 (`behaviour_url("auth")`), so that a model entry keeps
its own model name, e.g. to check that the name never reaches an error text. Every request is kept in
`requests` (the last 1000): its path, JSON body and Authorization header.

`POST /v1/moderations` answers as OpenAI's moderation endpoint: flagged (category "violence") when the input
holds "[unsafe]". Every request is recorded in `StandinEndpoint.calls` as (path, model or None, body).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass

    def _chunks(self, model: str, messages: list[dict]) -> tuple[list[str], float]:
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if model == "echo":
            words = f"You said: {last}".split(" ")
            return [w if i == 0 else " " + w for i, w in enumerate(words)], 0.0
        if model.startswith("echo-"):
            return ["word "] * int(model.split("-", 1)[1]), 0.0
        if model == "history":
            return [f"turns={sum(1 for m in messages if m.get('role') == 'user')}"], 0.0
        if model == "script":
            return ["Here:\n\n<script>window.__pwned = 1</script>\n\n", '<img src="x" onerror="window.__pwned = 2">', "\n\n**bold**"], 0.0
        if model == "leak":
            return ["I am the Leaky model ", "by Leakcorp."], 0.0
        if model == "slow":
            return ["tick "] * 20, 0.2
        if model.startswith("style-"):
            return [f"{model[6:].capitalize()} here. ", "Thinking about ", f"{len(last.split())} words ",
                    "you sent, my short answer is ", "yes, with one careful caveat."], 0.0
        return ["ok"], 0.0

    def _send(self, text: str) -> None:
        self.wfile.write(text.encode())
        self.wfile.flush()

    def _start_stream(self, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if length is not None:
            self.send_header("Content-Length", str(length))
        # The stream ends when the connection does (HTTP/1.1 would otherwise wait for a next response).
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _protocol_edge(self, behaviour: str) -> bool:
        """Serve one of the protocol's edge cases; False when ``behaviour`` is none of them."""
        if behaviour == "hello":
            self._start_stream()
            self._send(": keep-alive comment\n\n")
            for piece in ("Hel", "lo", ", vot", "er!"):
                self._send(f"data: {_chunk(piece)}\n\n")
            self._send(f"data: {_chunk(finish='stop')}\n\n")
            usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
            self._send(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n")
        elif behaviour == "cutoff":
            # The server's own token limit cut the answer.
            self._start_stream()
            self._send(f"data: {_chunk('Once upon a')}\n\n")
            self._send(f"data: {_chunk(finish='length')}\n\ndata: [DONE]\n\n")
        elif behaviour == "multiline":
            self._start_stream()
            self._send('event: message\r\ndata: {"choices": [{"delta":\r\ndata: {"content": "two lines"}}]}\r\n\r\n')
            self._send("data: [DONE]\r\n\r\n")
        elif behaviour == "auth":
            self._start_stream()
            self._send(f"data: {_chunk(self.headers.get('Authorization', 'none'), 'stop')}\n\ndata: [DONE]\n\n")
        elif behaviour == "inerror":
            self._start_stream()
            self._send(f'data: {{"error": {{"message": "{self._model} is overloaded"}}}}\n\n')
        elif behaviour == "badevent":
            self._start_stream()
            self._send(f"data: {_chunk('fine so far')}\n\n")
            self._send("data: <html>surprise</html>\n\n")
        elif behaviour == "cut":
            self._start_stream(length=100_000)
            self._send(f"data: {_chunk('half an ans')}\n\n")
            self.close_connection = True
        elif behaviour == "unfinished":
            self._start_stream()
            self._send(f"data: {_chunk('and then')}\n\n")
        elif behaviour == "stall":
            self._start_stream()
            self._send(f"data: {_chunk('thinking')}\n\n")
            time.sleep(30)
        elif behaviour == "long":
            self._start_stream()
            try:
                for i in range(1000):
                    self._send(f"data: {_chunk(f'w{i} ')}\n\n")
                    time.sleep(0.005)
                self._send("data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            return False
        return True

    def _moderation(self, body: dict) -> None:
        flagged = "[unsafe]" in str(body.get("input", ""))
        payload = json.dumps({"id": "modr-standin", "model": body.get("model"), "results": [
            {"flagged": flagged, "categories": {"violence": flagged, "harassment": False}}
        ]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append({"path": self.path, "body": body, "authorization": self.headers.get("Authorization")})
        self._model = model = str(body.get("model", ""))
        self.server.calls.append((self.path, model if self.path.endswith("/chat/completions") else None, body))
        if self.path.endswith("/moderations"):
            self._moderation(body)
            return
        # /<behaviour>/v1/chat/completions names the behaviour in the path; /v1/chat/completions by the model.
        segments = self.path.strip("/").split("/")
        behaviour = segments[0] if len(segments) > 2 and segments[1] == "v1" else model
        try:
            if self._protocol_edge(behaviour):
                return
        except (BrokenPipeError, ConnectionResetError):
            return
        model = behaviour
        if model == "fail":
            payload = json.dumps({"error": {"message": f"model {self._model} exploded"}}).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if model == "garbage":
            payload = b"<html>this is not an event stream</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        if model == "hang":
            time.sleep(30)
            return
        chunks, delay = self._chunks(model, body.get("messages") or [])
        limit = body.get("max_tokens")
        reason = "stop"
        if isinstance(limit, int) and len(chunks) > limit:
            chunks, reason = chunks[:limit], "length"
        try:
            for piece in chunks:
                event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            final = {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": len(chunks)}}
            self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class StandinEndpoint:
    """Start with `StandinEndpoint().start()`; `base_url` is then http://127.0.0.1:<port>/v1."""

    def __init__(self, port: int = 0):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.requests = collections.deque(maxlen=1000)
        self.server.calls = []
        self.thread = threading.Thread(target=self.server.serve_forever, name="standin-endpoint", daemon=True)

    @property
    def calls(self) -> list[tuple[str, str | None, dict]]:
        return self.server.calls

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def requests(self) -> collections.deque:
        return self.server.requests

    def behaviour_url(self, behaviour: str) -> str:
        """A base URL whose path names the behaviour, whatever model name the request asks for."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/{behaviour}/v1"

    def start(self) -> "StandinEndpoint":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    import sys

    endpoint = StandinEndpoint(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(endpoint.base_url, flush=True)
    threading.Event().wait()
