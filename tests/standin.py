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
- `fail`: answers HTTP 500.
- `style-<word>`: a short answer in a recognisable style, opening "<Word> here." (simulated voters tell the
  models apart by it, as a rigging voter would).

`POST /v1/moderations` answers as OpenAI's moderation endpoint: flagged (category "violence") when the input
holds "[unsafe]". Every request is recorded in `StandinEndpoint.calls` as (path, model or None, body).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
        model = str(body.get("model", ""))
        self.server.calls.append((self.path, model if self.path.endswith("/chat/completions") else None, body))
        if self.path.endswith("/moderations"):
            self._moderation(body)
            return
        if model == "fail":
            payload = b'{"error": {"message": "internal error"}}'
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
        try:
            for piece in chunks:
                event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
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
        self.server.calls = []
        self.thread = threading.Thread(target=self.server.serve_forever, name="standin-endpoint", daemon=True)

    @property
    def calls(self) -> list[tuple[str, str | None, dict]]:
        return self.server.calls

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

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
