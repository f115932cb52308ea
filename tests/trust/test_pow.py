"""The proof of work before a session's first battle: refused when missing or wrong, over the real HTTP and
websocket paths; solved for real by pow.js in Chromium."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from arena.models import Battle, Turn
from trust.models import SessionProof
from trust.pow import pow_answers, pow_challenge, pow_solve
from trust.simulate import _http, session_prove

from tests.browser import TEST_POW_BITS, Page
from tests.voters import Voter, standin_entry

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def echo_pair(standin, inprocess):
    return [standin_entry(standin, "p-one", "echo"), standin_entry(standin, "p-two", "echo")]


@database_sync_to_async
def db(fn):
    return fn()


def chat_calls(standin) -> int:
    return sum(1 for path, model, _ in standin.calls if model is not None)


@pytest.mark.asyncio
async def test_a_session_that_skipped_the_proof_is_refused_with_a_clear_message(echo_pair, standin):
    calls = chat_calls(standin)
    voter = await Voter.open(prove=False)
    await voter.send({"type": "start", "prompt": "hello"})
    error = await voter.error()
    assert error["code"] == "proof_required" and error["status"] == 403
    assert "bot check" in error["message"]
    assert await db(lambda: (Battle.objects.count(), Turn.objects.count())) == (0, 0)
    assert chat_calls(standin) == calls
    await voter.close()


@pytest.mark.asyncio
async def test_a_wrong_or_malformed_answer_is_refused_and_the_session_stays_unproved(echo_pair, settings):
    bits = settings.ARENA_POW_BITS
    voter = await Voter.open(prove=False)
    challenge = pow_challenge(voter.session_key)
    wrong = next(str(n) for n in range(1000) if not pow_answers(challenge, str(n), bits))
    answer = await session_prove(voter.session_key, client="127.0.0.1", nonce=wrong)
    assert answer["status"] == 400 and answer["code"] == "proof_wrong" and "wrong" in answer["message"]
    for body, code in ((b"{not json", "proof_invalid"), (b'{"nonce": 12}', "proof_invalid"), (b"[1]", "proof_invalid"),
                       (json.dumps({"nonce": "x" * 40}).encode(), "proof_invalid")):
        reply = await _http("POST", "/trust/proof/", client="127.0.0.1", cookie=voter.session_key, body=body)
        assert reply["status"] == 400 and json.loads(reply["body"])["code"] == code, body
    # Another session's right answer is wrong for this one: the challenge is bound to the session.
    other = await Voter.open()
    other_nonce = pow_solve(pow_challenge(other.session_key), bits)
    assert not pow_answers(challenge, other_nonce, bits)
    assert await db(lambda: SessionProof.objects.filter(session_key=voter.session_key).exists()) is False
    await voter.send({"type": "start", "prompt": "hello"})
    assert (await voter.error())["code"] == "proof_required"
    await voter.close()
    await other.close()


@pytest.mark.asyncio
async def test_a_solved_session_plays_and_is_not_asked_again(echo_pair, settings):
    voter = await Voter.open()
    proof = await db(lambda: SessionProof.objects.get(session_key=voter.session_key))
    assert proof.bits == settings.ARENA_POW_BITS
    asked = json.loads((await _http("GET", "/trust/proof/", client="127.0.0.1", cookie=voter.session_key))["body"])
    assert asked["required"] is False and asked["challenge"] is None
    assert 0 < asked["expires_in"] <= settings.ARENA_POW_TTL
    await voter.send({"type": "start", "prompt": "hello"})
    await voter.until_finished()
    await voter.close()


@pytest.mark.asyncio
async def test_it_asks_nothing_when_switched_off(echo_pair, settings):
    settings.ARENA_POW = False
    voter = await Voter.open(prove=False)
    await voter.send({"type": "start", "prompt": "hello"})
    await voter.until_finished()
    await voter.close()


@pytest.mark.browser
def test_the_battle_page_solves_the_proof_in_the_browser_before_the_first_battle(chromium, arena, standin):
    standin_entry(standin, "b-one", "echo")
    standin_entry(standin, "b-two", "echo")
    page = Page(chromium, arena.url + "/")
    # Sent at once: the page holds the prompt until its proof is accepted, then sends it.
    page.ask("Hello from a real browser")
    page.wait_votable()
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    proofs = list(SessionProof.objects.values_list("session_key", "bits"))
    assert proofs == [(session, TEST_POW_BITS)], (proofs, page.errors)
    assert Battle.objects.filter(session_key=session).count() == 1
    assert not any("proof_required" in f for f in page.frames)
    assert page.errors == []
    page.close()
