"""The proof of work through daphne: a proof does not carry to another session's socket, a made-up session cookie
gets no challenge, new proved sessions are counted per proxy-forwarded address, and the battle page renews an
expired proof by itself."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import time

import httpx
import pytest
from django.utils import timezone

from arena.models import Battle
from trust.models import SessionProof
from trust.pow import pow_answers, pow_challenge, pow_solve

from tests.arena.test_security import next_frame, open_socket, session_of
from tests.browser import TEST_POW_BITS, LiveArena, Page
from tests.voters import standin_entry

pytestmark = [pytest.mark.django_db(transaction=True)]
INVENTED = "inventedsessionkey0123456789abcd"


@pytest.fixture(scope="module")
def live(django_db_setup, tmp_path_factory):
    """One daphne for the module: behind a proxy at 127.0.0.1, 2 new proved sessions per address, and proofs that
    last 60 s (the page renews one that close to its end before each prompt)."""
    arena = LiveArena(
        tmp_path_factory.mktemp("pow") / "daphne.log",
        ARENA_TRUSTED_PROXIES="127.0.0.1", ARENA_RATE_LIMIT_SESSIONS="2", ARENA_POW_TTL="60",
    ).start()
    yield arena
    arena.stop()


@pytest.fixture
def echo_pair(standin):
    return [standin_entry(standin, "live-one", "echo"), standin_entry(standin, "live-two", "echo")]


def asked(live, session: str | None, *, forwarded_for: str = "198.51.100.20") -> httpx.Response:
    cookies = {"sessionid": session} if session else {}
    return httpx.get(live.url + "/trust/proof/", cookies=cookies, headers={"X-Forwarded-For": forwarded_for})


def answered(live, session: str | None, nonce: str, *, forwarded_for: str = "198.51.100.20") -> httpx.Response:
    cookies = {"sessionid": session} if session else {}
    return httpx.post(live.url + "/trust/proof/", cookies=cookies, json={"nonce": nonce},
                      headers={"X-Forwarded-For": forwarded_for})


async def first_battle_frame(live, session: str) -> dict:
    async with open_socket(live, session) as ws:
        await ws.send(json.dumps({"type": "start", "prompt": "hello"}))
        return await next_frame(ws, ("started", "error"))


async def first_frame(live, session: str) -> dict:
    async with open_socket(live, session) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 30))


def test_a_proof_does_not_admit_another_session_and_an_invented_cookie_gets_no_challenge(live, echo_pair):
    """Tried over daphne: session A's answer posted with session B's cookie, then B's socket starting a battle;
    a made-up session cookie asking for a challenge, posting an answer computed for it with the server's own
    secret, and starting a battle. Before, any cookie got a challenge and a proof row. Now B and the made-up
    cookie are refused (400 and proof_required on B's socket; 401 and no_session on the made-up cookie's) and
    only A, once it answers, plays."""
    a, b = session_of(live), session_of(live)
    task_a, task_b = asked(live, a).json(), asked(live, b).json()
    assert task_a["required"] and task_a["bits"] == TEST_POW_BITS and task_a["challenge"] != task_b["challenge"]
    nonce_a = next(str(n) for n in itertools.count() if pow_answers(task_a["challenge"], str(n), TEST_POW_BITS)
                   and not pow_answers(task_b["challenge"], str(n), TEST_POW_BITS))
    replayed = answered(live, b, nonce_a)
    assert replayed.status_code == 400 and replayed.json()["code"] == "proof_wrong"
    frame = asyncio.run(first_battle_frame(live, b))
    assert frame["type"] == "error" and frame["code"] == "proof_required"

    refused = asked(live, INVENTED)
    assert refused.status_code == 401 and refused.json()["code"] == "no_session" and "challenge" not in refused.json()
    forged = answered(live, INVENTED, pow_solve(pow_challenge(INVENTED), TEST_POW_BITS))
    assert forged.status_code == 401
    frame = asyncio.run(first_frame(live, INVENTED))
    assert frame["type"] == "error" and frame["code"] == "no_session"  # and the socket closes

    assert answered(live, a, nonce_a).status_code == 200
    assert asyncio.run(first_battle_frame(live, a))["type"] == "started"
    assert list(SessionProof.objects.values_list("session_key", flat=True)) == [a]
    assert list(Battle.objects.values_list("session_key", flat=True)) == [a]


def test_new_proved_sessions_are_counted_per_forwarded_address(live):
    """Tried over daphne behind a trusted proxy, 2 new proved sessions allowed per address: three from one
    forwarded address, the third again with a made-up address at the left of X-Forwarded-For, and one from
    another address. The made-up part buys no new bucket; the other address passes."""
    def prove(forwarded_for: str) -> int:
        session = session_of(live)
        task = asked(live, session, forwarded_for=forwarded_for).json()
        return answered(live, session, pow_solve(task["challenge"], task["bits"]), forwarded_for=forwarded_for).status_code

    assert [prove("198.51.100.30") for _ in range(3)] == [200, 200, 429]
    assert prove("6.6.6.6, 198.51.100.30") == 429
    assert prove("198.51.100.31") == 200
    assert SessionProof.objects.count() == 3


@pytest.mark.browser
def test_the_battle_page_renews_an_expired_proof_before_sending_the_prompt(chromium, live, echo_pair):
    """Tried in Chromium: the page solves its proof on load, then the proof's lifetime passes while the page
    stays open (the page's clock moved on by it, the row's expiry set in the past) and the voter sends a prompt.
    Before, the page sent it with its old proof and the socket answered proof_expired; now the page asks again,
    solves the new challenge and sends the prompt, and the proof's expiry moves on."""
    page = Page(chromium, live.url + "/")
    page.page.clock.install()
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    deadline = time.monotonic() + 30
    while not SessionProof.objects.filter(session_key=session).exists():
        assert time.monotonic() < deadline, (page.errors, page.frames)
        time.sleep(0.05)  # the page's own check, started on load
    SessionProof.objects.filter(session_key=session).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    page.page.clock.fast_forward(61_000)  # the proof's 60 s
    page.ask("Hello after the proof expired")
    page.wait_votable()
    proof = SessionProof.objects.get(session_key=session)
    assert proof.expires_at > timezone.now() and proof.bits == TEST_POW_BITS
    assert Battle.objects.filter(session_key=session).count() == 1
    assert not any("proof_" in f for f in page.frames), page.frames
    assert page.errors == []
    page.close()
