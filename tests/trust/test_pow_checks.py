"""The proof of work's checks, with fabricated times: a proof expires and is renewed, an old or another session's
answer proves nothing, only sessions the server issued are answered, new proved sessions are counted per address,
and the production difficulty costs the battle page's solver about a second."""

from __future__ import annotations

import datetime
import itertools
import json
import runpy
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from trust.models import SessionProof
from trust.pow import (
    CHALLENGE_SECONDS, ProofRefused, check_session_proved, pow_answers, pow_challenge, pow_solve, proof_record,
    session_issued, session_proved,
)
from trust.simulate import _http, session_prove

ROOT = Path(__file__).resolve().parents[2]
# A whole number of challenge periods since the epoch: T0 opens a period.
T0 = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
assert T0.timestamp() % CHALLENGE_SECONDS == 0


def issued_session() -> str:
    """A session as the battle page issues it: a row in the session store."""
    store = SessionStore()
    store["arena"] = True
    store.save()
    return store.session_key


def answer(session_key: str, at: datetime.datetime, bits: int, *, not_for: list[str] = ()) -> str:
    """The first nonce that answers the session's challenge at ``at`` and none of the challenges ``not_for``."""
    challenge = pow_challenge(session_key, now=at.timestamp())
    return next(str(n) for n in itertools.count()
                if pow_answers(challenge, str(n), bits) and not any(pow_answers(c, str(n), bits) for c in not_for))


@pytest.mark.django_db
def test_a_proof_lasts_its_ttl_then_is_refused_as_expired_and_renewed_in_place(settings):
    """Tried: a proof made at T0 with a 1 h lifetime, checked just before and after the hour; then the session's
    old answer sent again 2 h later, and a fresh answer. Before, a proof counted for ever and one answer, kept
    aside, would have renewed it at will."""
    settings.ARENA_POW_TTL = 3600
    bits = settings.ARENA_POW_BITS
    key = issued_session()
    proof = proof_record(session_key=key, nonce=answer(key, T0, bits), now=T0)
    assert proof.expires_at == T0 + datetime.timedelta(hours=1) and proof.bits == bits
    assert session_proved(key, now=T0 + datetime.timedelta(minutes=59))
    assert not session_proved(key, now=T0 + datetime.timedelta(minutes=61))

    later = T0 + datetime.timedelta(hours=2)
    stale = answer(key, T0, bits, not_for=[pow_challenge(key, now=later.timestamp())])
    with pytest.raises(ProofRefused) as refused:
        proof_record(session_key=key, nonce=stale, now=later)
    assert refused.value.code == "proof_wrong" and refused.value.status == 400
    renewed = proof_record(session_key=key, nonce=answer(key, later, bits), now=later)
    assert renewed.pk == proof.pk and renewed.expires_at == later + datetime.timedelta(hours=1)
    assert SessionProof.objects.count() == 1

    # The battle socket's check (on the clock): an expired proof is told apart from a missing one.
    SessionProof.objects.filter(pk=proof.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    with pytest.raises(ProofRefused) as expired:
        check_session_proved(key)
    assert (expired.value.code, expired.value.status) == ("proof_expired", 403) and "expired" in expired.value.message
    with pytest.raises(ProofRefused) as missing:
        check_session_proved(issued_session())
    assert missing.value.code == "proof_required"
    # A row from before proofs expired (no expiry) counts no more.
    SessionProof.objects.filter(pk=proof.pk).update(expires_at=None)
    assert not session_proved(key)


@pytest.mark.django_db
def test_an_answer_counts_in_its_challenges_period_and_the_next_never_later(settings):
    """Tried: answers to the challenge asked at T0, sent one period later (a slow browser across the edge:
    accepted) and two periods later (a kept answer: refused)."""
    bits = settings.ARENA_POW_BITS
    slow, kept = issued_session(), issued_session()
    next_period = T0 + datetime.timedelta(seconds=CHALLENGE_SECONDS)
    assert proof_record(session_key=slow, nonce=answer(slow, T0, bits), now=next_period) is not None
    two_later = T0 + datetime.timedelta(seconds=2 * CHALLENGE_SECONDS)
    nonce = answer(kept, T0, bits, not_for=[pow_challenge(kept, now=t.timestamp()) for t in (next_period, two_later)])
    with pytest.raises(ProofRefused):
        proof_record(session_key=kept, nonce=nonce, now=two_later)
    assert not SessionProof.objects.filter(session_key=kept).exists()


@pytest.mark.django_db
def test_one_sessions_answer_does_not_prove_another(settings):
    """Tried: session B posts the answer session A solved. The challenge is an HMAC of the session key, so it
    is wrong for B and B stays unproved."""
    bits = settings.ARENA_POW_BITS
    a, b = issued_session(), issued_session()
    nonce = answer(a, T0, bits, not_for=[pow_challenge(b, now=T0.timestamp())])
    with pytest.raises(ProofRefused) as refused:
        proof_record(session_key=b, nonce=nonce, now=T0)
    assert refused.value.code == "proof_wrong"
    assert not SessionProof.objects.filter(session_key=b).exists()
    assert proof_record(session_key=a, nonce=nonce, now=T0).session_key == a


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_session_keys_the_server_did_not_issue_get_no_challenge_and_no_proof(settings):
    """Tried over the ASGI app: a made-up session cookie (well formed), a session whose store row has expired,
    and no cookie, each asking for a challenge and posting an answer computed for its key with the server's own
    secret. Before, any cookie got a challenge and a proof row; now each gets a 401 and nothing is written."""
    bits = settings.ARENA_POW_BITS
    invented = "inventedsessionkey0123456789abcd"
    expired = await database_sync_to_async(issued_session)()
    await database_sync_to_async(
        lambda: Session.objects.filter(pk=expired).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    )()
    for cookie in (invented, expired, None):
        asked = await _http("GET", "/trust/proof/", client="192.0.2.5", cookie=cookie)
        body = json.loads(asked["body"])
        assert asked["status"] == 401 and body["code"] == "no_session" and "challenge" not in body, cookie
        nonce = pow_solve(pow_challenge(cookie or ""), bits)
        posted = await _http("POST", "/trust/proof/", client="192.0.2.5", cookie=cookie,
                             body=json.dumps({"nonce": nonce}).encode())
        assert posted["status"] == 401 and json.loads(posted["body"])["code"] == "no_session", cookie
    assert await database_sync_to_async(SessionProof.objects.count)() == 0
    assert not await database_sync_to_async(session_issued)(invented)
    assert await database_sync_to_async(session_issued)(await database_sync_to_async(issued_session)())


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_new_proved_sessions_are_limited_per_address(settings):
    """Tried over the ASGI app: four new sessions proving from one address with 2 allowed per window, one from
    another address, and the first session sending its answer again. Before, one address minted as many proved
    sessions as it could hash; now the third gets a 429 and no row, while the other address and the repeat
    (not a new session) pass."""
    settings.ARENA_RATE_LIMIT_SESSIONS = 2
    keys = [await database_sync_to_async(issued_session)() for _ in range(5)]
    results = [await session_prove(key, client="198.51.100.7") for key in keys[:4]]
    assert [r.get("status") for r in results] == [200, 200, 429, 429]
    assert results[2]["code"] == "rate_limited" and "wait" in results[2]["message"]
    assert (await session_prove(keys[4], client="198.51.100.8"))["status"] == 200
    challenge = pow_challenge(keys[0])
    again = await _http("POST", "/trust/proof/", client="198.51.100.7", cookie=keys[0],
                        body=json.dumps({"nonce": pow_solve(challenge, settings.ARENA_POW_BITS)}).encode())
    assert again["status"] == 200
    proved = await database_sync_to_async(lambda: set(SessionProof.objects.values_list("session_key", flat=True)))()
    assert proved == {keys[0], keys[1], keys[4]}


def test_the_production_difficulty_costs_the_pages_solver_about_a_second(monkeypatch):
    """The default read with no ARENA_POW_BITS in the environment, and its expected hash count: 2**bits, which
    the checker's mean tries confirm at a small difficulty (200 fixed challenges). The battle page's solver
    (WebCrypto SHA-256 in Chromium, 512 digests a batch) does 0.3 to 1 million hashes a second on one core, so
    the expected solve must lie between a quarter second at the fastest and two seconds at the slowest."""
    monkeypatch.delenv("ARENA_POW_BITS", raising=False)
    bits = runpy.run_path(str(ROOT / "config" / "settings.py"))["ARENA_POW_BITS"]
    expected_hashes = 2 ** bits
    assert expected_hashes / 1_000_000 >= 0.25 and expected_hashes / 300_000 <= 2.0, bits

    small = 6
    tries = [int(pow_solve(f"fixed-challenge-{i}", small)) + 1 for i in range(200)]
    mean = sum(tries) / len(tries)
    assert 2 ** small * 0.75 <= mean <= 2 ** small * 1.25, mean  # about 3.5 standard errors either side
