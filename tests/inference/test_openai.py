"""The openai provider against a real streaming HTTP server on loopback, started by the tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference import GenerationError, generate
from inference.openai_compat import sse_events
from models_hub.models import ModelEntry

QUESTION = [{"role": "user", "content": "Say hello."}]


def chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class Arena(BaseHTTPRequestHandler):
    """Plays a different OpenAI-compatible server depending on the first path segment of the base URL."""

    requests: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Arena.requests.append({"path": self.path, "body": body, "authorization": self.headers.get("Authorization")})
        behaviour = self.path.split("/")[1]
        getattr(self, f"serve_{behaviour}")()

    def start_stream(self, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def send(self, text: str) -> None:
        self.wfile.write(text.encode())
        self.wfile.flush()

    def serve_ok(self) -> None:
        self.start_stream()
        self.send(": keep-alive comment\n\n")
        for piece in ("Hel", "lo", ", vot", "er!"):
            self.send(f"data: {chunk(piece)}\n\n")
        self.send(f"data: {chunk(finish='stop')}\n\n")
        usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
        self.send(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n")

    def serve_cutoff(self) -> None:
        # The server's own token limit cut the answer.
        self.start_stream()
        self.send(f"data: {chunk('Once upon a')}\n\n")
        self.send(f"data: {chunk(finish='length')}\n\ndata: [DONE]\n\n")

    def serve_multiline(self) -> None:
        self.start_stream()
        # One event split over two data lines (joined by a newline, still valid JSON), CRLF line endings.
        self.send('event: message\r\ndata: {"choices": [{"delta":\r\ndata: {"content": "two lines"}}]}\r\n\r\n')
        self.send("data: [DONE]\r\n\r\n")

    def serve_auth(self) -> None:
        self.start_stream()
        self.send(f"data: {chunk(self.headers.get('Authorization', 'none'), 'stop')}\n\ndata: [DONE]\n\n")

    def serve_error500(self) -> None:
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.send('{"error": {"message": "model secret-remote exploded"}}')

    def serve_garbage(self) -> None:
        self.start_stream()
        self.send(f"data: {chunk('fine so far')}\n\n")
        self.send("data: <html>surprise</html>\n\n")

    def serve_cut(self) -> None:
        # The server promised more bytes than it sends, then hangs up: a broken transfer.
        self.start_stream(length=100_000)
        self.send(f"data: {chunk('half an ans')}\n\n")
        self.close_connection = True

    def serve_unfinished(self) -> None:
        # The body ends cleanly but the answer never does: no finish reason, no [DONE].
        self.start_stream()
        self.send(f"data: {chunk('and then')}\n\n")

    def serve_slow(self) -> None:
        self.start_stream()
        self.send(f"data: {chunk('thinking')}\n\n")
        time.sleep(2)
        self.send("data: [DONE]\n\n")

    def serve_inerror(self) -> None:
        self.start_stream()
        self.send('data: {"error": {"message": "secret-remote is overloaded"}}\n\n')

    def serve_long(self) -> None:
        self.start_stream()
        try:
            for i in range(1000):
                self.send(f"data: {chunk(f'w{i} ')}\n\n")
                time.sleep(0.005)
            self.send("data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Arena)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def quick_timeouts(settings) -> None:
    settings.ARENA_OPENAI_CONNECT_TIMEOUT = 2.0
    settings.ARENA_OPENAI_READ_TIMEOUT = 0.5
    Arena.requests.clear()


def remote(base_url: str, **fields: object) -> ModelEntry:
    return ModelEntry(
        slug="secret-slug",
        display_name="Secret Model",
        organization="Secret Org",
        provider="openai",
        base_url=base_url,
        remote_model="secret-remote",
        **{"max_new_tokens": 32, "temperature": 0.0, **fields},
    )


def failure(entry: ModelEntry) -> str:
    with pytest.raises(GenerationError) as raised:
        generate(entry, QUESTION)
    reason = str(raised.value)
    for secret in ("secret", "Secret", "127.0.0.1", entry.base_url):
        assert secret not in reason
    return reason


def test_it_streams_the_text_in_order_with_the_usage_figures(server: str) -> None:
    pieces: list[str] = []

    result = generate(remote(f"{server}/ok/v1", system_prompt="Be kind."), QUESTION, on_text=pieces.append)

    assert pieces == ["Hel", "lo", ", vot", "er!"]
    assert result.text == "Hello, voter!"
    assert (result.prompt_tokens, result.output_tokens) == (9, 4)
    assert result.time_to_first_token is not None and result.tokens_per_second is not None
    sent = Arena.requests[0]
    assert sent["path"] == "/ok/v1/chat/completions"
    assert sent["body"]["model"] == "secret-remote"
    assert sent["body"]["stream"] is True
    assert sent["body"]["max_tokens"] == 32
    assert sent["body"]["messages"] == [{"role": "system", "content": "Be kind."}, *QUESTION]
    assert sent["authorization"] is None
    assert result.finish_reason == "stop"


def test_it_says_the_answer_was_cut_when_the_server_reports_its_length_limit(server: str) -> None:
    result = generate(remote(f"{server}/cutoff/v1"), QUESTION)

    assert (result.text, result.finish_reason) == ("Once upon a", "length")


def test_it_joins_the_data_lines_of_one_event(server: str) -> None:
    assert generate(remote(f"{server}/multiline/v1"), QUESTION).text == "two lines"


def test_it_sends_the_key_from_the_named_environment_variable(server: str, monkeypatch) -> None:
    monkeypatch.setenv("ARENA_TEST_REMOTE_KEY", "sk-test-123")

    result = generate(remote(f"{server}/auth/v1", api_key_env="ARENA_TEST_REMOTE_KEY"), QUESTION)

    assert result.text == "Bearer sk-test-123"


def test_it_fails_clearly_when_the_key_variable_is_missing(server: str, monkeypatch) -> None:
    monkeypatch.delenv("ARENA_TEST_REMOTE_KEY", raising=False)

    reason = failure(remote(f"{server}/auth/v1", api_key_env="ARENA_TEST_REMOTE_KEY"))

    assert reason == "The model's API key is not configured on the server."
    assert Arena.requests == []


def test_it_fails_clearly_on_an_http_error(server: str) -> None:
    assert failure(remote(f"{server}/error500/v1")) == "The model's server answered with an error (HTTP 500)."


def test_it_fails_clearly_on_an_error_inside_the_stream(server: str) -> None:
    assert failure(remote(f"{server}/inerror/v1")) == "The model's server reported an error."


def test_it_fails_clearly_on_garbage(server: str) -> None:
    assert failure(remote(f"{server}/garbage/v1")) == "The model's server sent a reply that could not be understood."


def test_it_fails_clearly_when_the_transfer_breaks(server: str) -> None:
    reason = failure(remote(f"{server}/cut/v1"))

    assert reason == "The connection to the model's server broke before the answer was complete."


def test_it_fails_clearly_when_the_stream_ends_before_the_answer(server: str) -> None:
    reason = failure(remote(f"{server}/unfinished/v1"))

    assert reason == "The connection to the model's server broke before the answer was complete."


def test_it_fails_clearly_on_a_timeout(server: str) -> None:
    assert failure(remote(f"{server}/slow/v1")) == "The model's server took too long to answer."


def test_it_fails_clearly_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    assert failure(remote(f"http://127.0.0.1:{port}/v1")) == "The model's server could not be reached."


def test_it_stops_reading_when_asked_to(server: str) -> None:
    pieces: list[str] = []

    result = generate(remote(f"{server}/long/v1"), QUESTION, on_text=pieces.append, should_stop=lambda: len(pieces) >= 3)

    assert pieces == ["w0 ", "w1 ", "w2 "]
    assert result.text == "w0 w1 w2 "
    assert result.finish_reason == "cancelled"


def test_it_parses_server_sent_events_by_the_rules() -> None:
    lines = ["data: a", "data:b", "", ": comment", "event: error", "data:  c", "", "", "id: 7", "", "data: tail"]

    events = [(event.event, event.data) for event in sse_events(lines)]

    assert events == [("message", "a\nb"), ("error", " c"), ("message", "tail")]
