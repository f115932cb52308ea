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


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("origin, host, scheme, accepted", [
    ("http://localhost", "localhost", "ws", True),
    ("http://localhost:8000", "localhost:8000", "ws", True),
    ("https://localhost", "localhost", "wss", True),
    ("http://localhost:9999", "localhost", "ws", False),  # another port of the same host
    ("http://localhost:9999", "localhost:8000", "ws", False),
    ("https://127.0.0.1", "127.0.0.1", "ws", False),  # another scheme
    ("http://127.0.0.1", "127.0.0.1", "wss", False),
    ("http://evil.example", "evil.example", "ws", False),  # not an allowed host
    ("null", "localhost", "ws", False),
])
async def test_the_origin_must_match_scheme_host_and_port(origin, host, scheme, accepted):
    """Tried: origins that differ from the page's in port or scheme only. Before, the check compared the host, so
    http://localhost:9999 and https://127.0.0.1 were accepted."""
    communicator = WebsocketCommunicator(
        application, "/ws/battle/", headers=[(b"origin", origin.encode()), (b"host", host.encode())]
    )
    communicator.scope["scheme"] = scheme
    connected, _ = await communicator.connect()
    assert connected == accepted
    await communicator.disconnect()


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(settings):
    """The address the rate limits key on: X-Forwarded-For counts only from a configured proxy, read from the
    right, so what a client writes at the left is ignored."""
    import ipaddress

    from config.asgi import forwarded_client

    def scope(peer: str, forwarded: str | None, proto: str | None = None) -> dict:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        headers += [(b"x-forwarded-proto", proto.encode())] if proto else []
        return {"type": "websocket", "client": [peer, 5000], "headers": headers}

    settings.ARENA_TRUSTED_PROXIES = []
    assert forwarded_client(scope("203.0.113.9", "198.51.100.1")) == ("203.0.113.9", "ws")
    settings.ARENA_TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    assert forwarded_client(scope("203.0.113.9", "198.51.100.1")) == ("203.0.113.9", "ws"), "not a proxy of ours"
    assert forwarded_client(scope("10.0.0.2", "198.51.100.1", "https")) == ("198.51.100.1", "wss")
    assert forwarded_client(scope("10.0.0.2", "6.6.6.6, 198.51.100.1")) == ("198.51.100.1", "ws"), "spoofed left part"
    assert forwarded_client(scope("10.0.0.2", "198.51.100.1, 10.0.0.7")) == ("198.51.100.1", "ws"), "two proxies"
    assert forwarded_client(scope("10.0.0.2", "not-an-address")) == ("10.0.0.2", "ws")
    assert forwarded_client(scope("10.0.0.2", None)) == ("10.0.0.2", "ws")


def _battles_started(arena, forwarded: list[str | None]) -> list[str]:
    """One socket per entry, each with its own session, each starting one battle; the frame type each got."""
    async def one(forwarded_for: str | None) -> str:
        session = await asyncio.to_thread(session_of, arena)
        async with open_socket(arena, session, forwarded_for=forwarded_for) as ws:
            await ws.send(json.dumps({"type": "start", "prompt": "hello"}))
            frame = await next_frame(ws, ("started", "error"))
            return frame["type"] if frame["type"] == "started" else frame["code"]

    async def all_of() -> list[str]:
        return [await one(f) for f in forwarded]

    return asyncio.run(all_of())


@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_proxy_each_client_address_has_its_own_battle_limit(standin, tmp_path):
    """Tried over daphne, every connection from 127.0.0.1 as a proxy would make them, 2 battles per address.
    Before, the limit keyed on the socket's peer, so everyone behind the proxy shared one bucket; now the address
    the trusted proxy forwarded counts, and a client's own made-up X-Forwarded-For (the left part) buys nothing."""
    from tests.browser import LiveArena

    standin_entry(standin, "proxy-a", "echo")
    standin_entry(standin, "proxy-b", "echo")
    # These clients speak the websocket directly, not through the page that solves the proof of work (tests/trust).
    arena = LiveArena(
        tmp_path / "daphne.log", ARENA_TRUSTED_PROXIES="127.0.0.1", ARENA_RATE_LIMIT_BATTLES="2", ARENA_POW="0"
    ).start()
    try:
        first = _battles_started(arena, ["198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.1"])
        spoofed = _battles_started(arena, ["6.6.6.1, 198.51.100.2", "6.6.6.2, 198.51.100.2"])
    finally:
        arena.stop()
    assert first == ["started", "started", "started", "rate_limited"]
    assert spoofed == ["started", "rate_limited"], "the made-up left part is not a new bucket"


@pytest.mark.django_db(transaction=True)
def test_without_a_trusted_proxy_a_spoofed_forwarded_address_shares_the_peers_limit(standin, arena):
    """Tried: 3 sessions from one address, each with a different made-up X-Forwarded-For, 2 battles allowed per
    address (the arena fixture's daphne trusts no proxy). Before, with daphne's --proxy-headers, each header value
    was a fresh bucket (60 of 60 got through)."""
    from django.core.cache import cache

    standin_entry(standin, "spoof-a", "echo")
    standin_entry(standin, "spoof-b", "echo")
    arena.stop()
    arena.env["ARENA_RATE_LIMIT_BATTLES"] = "2"
    arena.env["ARENA_POW"] = "0"  # a bare websocket client, not the page that solves the proof of work
    arena.start()
    cache.clear()
    assert _battles_started(arena, ["6.6.6.1", "6.6.6.2", "6.6.6.3"]) == ["started", "started", "rate_limited"]


@pytest.mark.django_db(transaction=True)
def test_refused_votes_on_another_voters_battle_do_not_spend_the_shared_address_budget(settings):
    """Tried: an attacker on the victim's address sends 10 votes on the victim's battle (not found, since it is
    not theirs), then the victim votes, 3 votes per address allowed. Before, the refused votes were counted
    first, and the victim was refused."""
    from models_hub.models import ModelEntry

    settings.ARENA_RATE_LIMIT_VOTES = 3
    left, right = (ModelEntry.objects.create(slug=s, display_name=s.title()) for s in ("own-a", "own-b"))
    battle = Battle.objects.create(session_key="victim")
    for position, entry in (("left", left), ("right", right)):
        side = Side.objects.create(battle=battle, position=position, model=entry)
        Turn.objects.create(side=side, index=0, prompt="p", response="r", status="done")
    for _ in range(10):
        with pytest.raises(BattleError) as refused:
            vote_record(public_id=battle.public_id, session_key="attacker", ip="192.0.2.1", choice="left")
        assert refused.value.code == "not_found"
    vote, names = vote_record(public_id=battle.public_id, session_key="victim", ip="192.0.2.1", choice="right")
    assert vote.choice == "right" and names == {"A": "Own-A", "B": "Own-B"}


@pytest.mark.django_db
def test_the_rate_limit_window_slides_so_no_edge_lets_twice_the_limit_through(settings):
    """Tried: the limit (3 per 2 s) used up, then more right after the next whole 2 s boundary. A fixed window
    started counting afresh there and let 3 more through; a sliding window refuses until the first hit is 2 s old."""
    import time

    settings.ARENA_RATE_LIMIT_WINDOW = 2

    def wait_until_phase(low: float, high: float) -> None:
        while not low <= time.time() % 2 < high:
            time.sleep(0.01)

    wait_until_phase(1.5, 1.7)  # late in a fixed 2 s window
    for _ in range(3):
        rate_limit_hit("votes", session_key="s", ip="192.0.2.9", limit=3)
    wait_until_phase(0.0, 0.3)  # early in the next one: the three hits are under a second old
    with pytest.raises(RateLimited) as refused:
        rate_limit_hit("votes", session_key="s", ip="192.0.2.9", limit=3)
    assert 1 <= refused.value.retry_after <= 2
    time.sleep(refused.value.retry_after)
    rate_limit_hit("votes", session_key="s", ip="192.0.2.9", limit=3)  # room again once they are 2 s old
