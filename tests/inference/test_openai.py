"""The openai provider against a real streaming HTTP server on loopback: the suite's stand-in endpoint."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from inference import GenerationError, generate
from inference.openai_compat import sse_events
from models_hub.models import ModelEntry
from tests.standin import StandinEndpoint

QUESTION = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def server(standin: StandinEndpoint) -> Callable[[str], str]:
    """The suite's stand-in endpoint (tests/standin.py), with the behaviour named in the base URL's path so the
    entry keeps its secret model name; its record of requests starts empty for each test."""
    standin.requests.clear()
    return standin.behaviour_url


@pytest.fixture(autouse=True)
def timeouts(settings) -> None:
    # Generous on purpose: on a loaded machine a healthy stream may pause; only the timeout test shortens it.
    settings.ARENA_OPENAI_CONNECT_TIMEOUT = 5.0
    settings.ARENA_OPENAI_READ_TIMEOUT = 30.0


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


def test_it_streams_the_text_in_order_with_the_usage_figures(server, standin) -> None:
    pieces: list[str] = []

    result = generate(remote(server("hello"), system_prompt="Be kind."), QUESTION, on_text=pieces.append)

    assert pieces == ["Hel", "lo", ", vot", "er!"]
    assert result.text == "Hello, voter!"
    assert (result.prompt_tokens, result.output_tokens) == (9, 4)
    assert result.time_to_first_token is not None and result.tokens_per_second is not None
    sent = standin.requests[0]
    assert sent["path"] == "/hello/v1/chat/completions"
    assert sent["body"]["model"] == "secret-remote"
    assert sent["body"]["stream"] is True
    assert sent["body"]["max_tokens"] == 32
    assert sent["body"]["messages"] == [{"role": "system", "content": "Be kind."}, *QUESTION]
    assert sent["authorization"] is None
    assert result.finish_reason == "stop"


def test_it_says_the_answer_was_cut_when_the_server_reports_its_length_limit(server: str) -> None:
    result = generate(remote(server("cutoff")), QUESTION)

    assert (result.text, result.finish_reason) == ("Once upon a", "length")


def test_it_joins_the_data_lines_of_one_event(server) -> None:
    assert generate(remote(server("multiline")), QUESTION).text == "two lines"


def test_it_sends_the_key_from_the_named_environment_variable(server, monkeypatch) -> None:
    monkeypatch.setenv("ARENA_KEY_TEST_REMOTE", "sk-test-123")

    result = generate(remote(server("auth"), api_key_env="ARENA_KEY_TEST_REMOTE"), QUESTION)

    assert result.text == "Bearer sk-test-123"


def test_it_fails_clearly_when_the_key_variable_is_missing(server, standin, monkeypatch) -> None:
    monkeypatch.delenv("ARENA_KEY_TEST_REMOTE", raising=False)

    reason = failure(remote(server("auth"), api_key_env="ARENA_KEY_TEST_REMOTE"))

    assert reason == "The model's API key is not configured on the server."
    assert list(standin.requests) == []


def test_it_fails_clearly_on_an_http_error(server) -> None:
    assert failure(remote(server("fail"))) == "The model's server answered with an error (HTTP 500)."


def test_it_fails_clearly_on_an_error_inside_the_stream(server) -> None:
    assert failure(remote(server("inerror"))) == "The model's server reported an error."


def test_it_fails_clearly_on_garbage(server) -> None:
    # A data line that is not JSON after a good one.
    assert failure(remote(server("badevent"))) == "The model's server sent a reply that could not be understood."


def test_it_fails_clearly_when_the_transfer_breaks(server) -> None:
    reason = failure(remote(server("cut")))

    assert reason == "The connection to the model's server broke before the answer was complete."


def test_it_fails_clearly_when_the_stream_ends_before_the_answer(server) -> None:
    reason = failure(remote(server("unfinished")))

    assert reason == "The connection to the model's server broke before the answer was complete."


def test_it_fails_clearly_on_a_timeout(server, settings) -> None:
    # The stand-in sends one piece and then nothing for 30 s: any read timeout well below that must fire.
    settings.ARENA_OPENAI_READ_TIMEOUT = 0.5
    assert failure(remote(server("stall"))) == "The model's server took too long to answer."


def test_it_fails_clearly_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    assert failure(remote(f"http://127.0.0.1:{port}/v1")) == "The model's server could not be reached."


def test_it_stops_reading_when_asked_to(server) -> None:
    pieces: list[str] = []

    result = generate(remote(server("long")), QUESTION, on_text=pieces.append, should_stop=lambda: len(pieces) >= 3)

    assert pieces == ["w0 ", "w1 ", "w2 "]
    assert result.text == "w0 w1 w2 "
    assert result.finish_reason == "cancelled"


def test_it_parses_server_sent_events_by_the_rules() -> None:
    lines = ["data: a", "data:b", "", ": comment", "event: error", "data:  c", "", "", "id: 7", "", "data: tail"]

    events = [(event.event, event.data) for event in sse_events(lines)]

    assert events == [("message", "a\nb"), ("error", " c"), ("message", "tail")]
