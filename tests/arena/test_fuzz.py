"""Fuzz every HTTP endpoint and every websocket message type: a refusal is a clear 4xx (or a 503 while a store
is away), never a 500, and a refused message changes no row."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from django.urls import URLPattern, get_resolver
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from arena.models import Battle, Side, Turn, Vote
from models_hub.models import ModelEntry

from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True)]

FUZZ = hypothesis_settings(
    max_examples=80, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

edge_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\u202e", "\ud800", "👩‍👩‍👧", "<script>alert(1)</script>", "' OR 1=1 --", "A" * 5000, "{{7*7}}"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | edge_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
messages = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["start", "continue", "regenerate", "vote", "resume", "launch", ""])},
        optional={
            "prompt": json_values, "mode": st.sampled_from(["anonymous", "named", "direct", "x"]) | json_values,
            "models": json_values, "choice": st.sampled_from(["A", "B", "tie", "bothbad", "left"]) | json_values,
            "side": json_values, "battle": st.just("VICTIM") | json_values, "extra": json_values,
        },
    ),
    json_values,
)


def row_counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Battle, Side, Turn, Vote, ModelEntry))


@pytest.fixture
def victim(standin, inprocess):
    """Two models, and a finished battle owned by somebody else that fuzzed messages may aim at."""
    left = standin_entry(standin, "fuzz-a", "echo")
    right = standin_entry(standin, "fuzz-b", "echo")
    battle = Battle.objects.create(session_key="someone-else")
    for position, entry in (("left", left), ("right", right)):
        side = Side.objects.create(battle=battle, position=position, model=entry)
        Turn.objects.create(side=side, index=0, prompt="p", response="r", status="done")
    return battle


@FUZZ
@given(message=messages, as_text=st.booleans(), raw=st.none() | st.text(min_size=1, max_size=60))
def test_websocket_messages_never_break_the_server(victim, message, as_text, raw):
    if isinstance(message, dict) and message.get("battle") == "VICTIM":
        message["battle"] = victim.public_id

    async def exchange() -> list[dict]:
        voter = await Voter.open()
        try:
            if raw is not None:
                await voter.send(raw)
            else:
                await voter.send(message)
            frame = await voter.receive(timeout=20)
            return [frame]
        finally:
            await voter.close()

    before = row_counts()
    frames = asyncio.run(exchange())
    frame = frames[0]
    assert frame["type"] in ("error", "started", "state"), frame
    if frame["type"] == "error":
        assert frame["status"] != 500, frame
        assert frame["message"], frame
        assert row_counts() == before, f"a refused message changed rows: {message!r}"
    victim.refresh_from_db()
    assert not Vote.objects.filter(battle=victim).exists()


def plain_routes() -> list[str]:
    """Every URL of the project that takes no argument, so new endpoints are fuzzed without editing this test."""
    routes = []
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLPattern) and not pattern.pattern.converters:
            routes.append("/" + str(pattern.pattern))
    return routes + ["/admin/", "/admin/login/", "/admin/models_hub/modelentry/add/", "/static/arena/battle.js"]


@FUZZ
@given(
    route=st.sampled_from(plain_routes()),
    method=st.sampled_from(["get", "post", "put", "patch", "delete", "options", "head"]),
    query=st.dictionaries(st.text(max_size=8), edge_text, max_size=3),
    body=st.binary(max_size=200) | edge_text,
)
def test_http_endpoints_never_answer_500(client, route, method, query, body):
    before = row_counts()
    # Percent-encode the bytes a client would send, lone surrogates included, as a raw query string.
    raw_query = "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in query.items()
    )
    route = f"{route}?{raw_query}" if raw_query else route
    if method == "get" or method == "head":
        response = getattr(client, method)(route)
    else:
        # What arrives over the wire is bytes: text with lone surrogates travels as the bytes a client would send.
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        response = getattr(client, method)(route, data=raw, content_type="application/octet-stream")
    assert response.status_code < 500, (method, route, response.status_code)
    assert row_counts() == before


@hypothesis_settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(depth=st.integers(min_value=1, max_value=3000), opener=st.sampled_from(["[", '{"a":']),
       wrapped=st.booleans())
def test_nested_json_of_any_depth_gets_an_answer_not_a_crash(victim, depth, opener, wrapped):
    """Tried: arrays and objects nested 1 to 3,000 deep, bare or inside a vote's choice. Before, past about a
    thousand levels json.loads raised RecursionError and the socket closed with 1011; now every message gets an
    answer frame, a 400 when it nests more than the consumer allows."""
    from arena.consumers import MAX_JSON_DEPTH

    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    text = '{"type": "vote", "choice": ' + nested + "}" if wrapped else nested

    async def exchange() -> dict:
        voter = await Voter.open()
        try:
            await voter.send(text)
            return await voter.receive(timeout=20)
        finally:
            await voter.close()

    frame = asyncio.run(exchange())
    assert frame["type"] == "error" and 400 <= frame["status"] < 500, frame
    if depth + wrapped > MAX_JSON_DEPTH:
        assert frame["code"] == "too_deep"
