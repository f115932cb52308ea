"""Security probes: cross-site websockets, CSRF, and HTML in names, prompts and answers rendered inert."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from leaderboard.snapshots import leaderboard_snapshot_create
from arena.models import Battle, Side, Turn, Vote
from config.asgi import application
from models_hub.models import ModelEntry

EVIL_NAME = '<img src=x onerror="alert(1)">Evil'
EVIL_PROMPT = "<script>alert('prompt')</script>"
EVIL_ANSWER = '<iframe src="javascript:alert(2)"></iframe>'


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_it_refuses_a_websocket_opened_from_another_site():
    communicator = WebsocketCommunicator(
        application, "/ws/battle/", headers=[(b"origin", b"http://evil.example"), (b"host", b"localhost")]
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


@pytest.mark.django_db
def test_admin_posts_without_a_csrf_token_are_refused():
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    response = client.post("/admin/models_hub/modelentry/add/", {
        "display_name": "Sneaky", "slug": "sneaky", "provider": "openai", "base_url": "http://h/v1", "remote_model": "m",
        "pool": "default", "prompt_format": "chat", "max_new_tokens": "16", "temperature": "0", "top_p": "1",
        "sampling_weight": "1", "visibility": "public",
    })
    assert response.status_code == 403
    assert not ModelEntry.objects.exists()


@pytest.fixture
def hostile_battles(db):
    evil = ModelEntry.objects.create(slug="evil", display_name=EVIL_NAME, organization="<b>Org</b>", license="<i>L</i>")
    plain = ModelEntry.objects.create(slug="plain", display_name="Plain", organization="Plain Org")
    for i in range(6):
        battle = Battle.objects.create(session_key="s")
        for position, entry in (("left", evil), ("right", plain)):
            side = Side.objects.create(battle=battle, position=position, model=entry)
            Turn.objects.create(side=side, index=0, prompt=EVIL_PROMPT, response=EVIL_ANSWER, status="done")
        Vote.objects.create(battle=battle, choice=["left", "right", "tie"][i % 3], session_key="s")
    leaderboard_snapshot_create()


def test_the_leaderboard_renders_hostile_model_names_as_text(client, hostile_battles):
    for url in ("/leaderboard/", "/leaderboard/head-to-head/"):
        html = client.get(url).content.decode()
        assert 'onerror="alert(1)"' not in html and "<img src=x" not in html
        assert "<b>Org</b>" not in html
    # The page swaps in server-rendered table HTML on a live update: it must be escaped the same way.
    table_html = client.get("/leaderboard/data/").json()["table_html"]
    assert "&lt;img" in table_html and "<img src=x" not in table_html


def test_the_admin_renders_hostile_prompts_answers_and_names_as_text(client, hostile_battles):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    turn = Turn.objects.first()
    pages = [
        "/admin/arena/turn/", f"/admin/arena/turn/{turn.pk}/change/", "/admin/arena/battle/",
        "/admin/models_hub/modelentry/", "/admin/arena/vote/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert EVIL_PROMPT not in html and EVIL_ANSWER not in html and EVIL_NAME not in html, url


# ---------------------------------------------------------------------------------------------------------------
# Over daphne itself: frames, nesting, the Origin check and the per-address limits behind a proxy.

import asyncio  # noqa: E402
import json  # noqa: E402

import httpx  # noqa: E402
import websockets  # noqa: E402

from arena.ratelimit import RateLimited, rate_limit_hit  # noqa: E402
from arena.services import BattleError, vote_record  # noqa: E402
from tests.voters import standin_entry  # noqa: E402


def session_of(arena) -> str:
    """A voter's session, the way a browser gets one: GET the battle page."""
    return httpx.get(arena.url + "/").cookies["sessionid"]


def open_socket(arena, session: str, *, origin: str | None = None, forwarded_for: str | None = None):
    headers = {"Cookie": f"sessionid={session}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return websockets.connect(
        f"ws://127.0.0.1:{arena.port}/ws/battle/", origin=origin or arena.url, additional_headers=headers,
        max_size=None, open_timeout=20,
    )


async def next_frame(ws, kind: str | tuple[str, ...], timeout: float = 30) -> dict:
    kinds = (kind,) if isinstance(kind, str) else kind
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] in kinds:
            return frame


@pytest.mark.django_db(transaction=True)
def test_daphne_answers_deeply_nested_json_with_a_400_and_keeps_the_socket(arena):
    """Tried: 2 KB of JSON nested 1,000 deep. Before, json.loads raised RecursionError, the socket closed with 1011
    and a traceback was logged; now the voter gets an error frame and the same socket keeps working."""
    session = session_of(arena)

    async def exchange() -> tuple[dict, dict, dict]:
        async with open_socket(arena, session) as ws:
            await ws.send("[" * 1000 + "]" * 1000)
            deep = await next_frame(ws, "error")
            await ws.send(json.dumps({"type": "vote", "choice": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}))
            nested = await next_frame(ws, "error")
            await ws.send(json.dumps({"type": "resume", "battle": "nope"}))
            return deep, nested, await next_frame(ws, "error")

    deep, nested, after = asyncio.run(exchange())
    assert (deep["code"], deep["status"]) == ("too_deep", 400)
    assert (nested["code"], nested["status"]) == ("too_deep", 400)
    assert after["code"] == "not_found", "the socket still answers after the refusal"
    assert "Traceback" not in arena.log.read_text()


@pytest.mark.django_db(transaction=True)
def test_daphne_answers_oversized_frames_instead_of_dropping_them(arena):
    """Tried: a 200 KiB and a 3 MiB text frame. 200 KiB (over the consumer's 64 KiB) gets a 413 error frame on a
    socket that stays open. 3 MiB is over daphne's own 1 MiB limit: before, daphne dropped the TCP connection with
    no close frame; now the voter gets the close frame 1009 (message too big)."""
    session = session_of(arena)

    async def exchange() -> tuple[dict, dict, int | None]:
        async with open_socket(arena, session) as ws:
            await ws.send(json.dumps({"type": "start", "prompt": "x" * (200 * 1024)}))
            large = await next_frame(ws, "error")
            await ws.send(json.dumps({"type": "resume", "battle": "nope"}))
            after = await next_frame(ws, "error")
        async with open_socket(arena, session) as ws:
            await ws.send(json.dumps({"type": "start", "prompt": "x" * (3 * 1024 * 1024)}))
            try:
                await next_frame(ws, "error")
            except websockets.ConnectionClosed as closed:
                return large, after, closed.rcvd.code if closed.rcvd else None
        return large, after, -1

    large, after, close_code = asyncio.run(exchange())
    assert (large["code"], large["status"]) == ("message_too_large", 413)
    assert after["code"] == "not_found", "the socket stays usable after a 413"
    assert close_code == 1009
