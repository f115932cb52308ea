"""A proof of work before a session's battles: about a second for one browser, costly for a farm of sessions.

A challenge is an HMAC, under SECRET_KEY, of the session key and the current period of ``CHALLENGE_SECONDS``,
so it needs no storage, answers for one session only, and goes stale: an answer is accepted for the period it
was asked in and the next one, never later, so a nonce kept aside cannot renew a proof. A nonce answers it when
SHA-256("<challenge>:<nonce>") starts with ``ARENA_POW_BITS`` zero bits (2**bits hashes expected).

Only a session the server issued (a live row of the session store) is given a challenge or a proof: a made-up
session cookie gets a 401 and nothing is written. The view counts new proofs per client address
(``ARENA_RATE_LIMIT_SESSIONS`` in every ``ARENA_RATE_LIMIT_WINDOW``), so one address cannot mint proved sessions
faster than that however fast it hashes. A proof lasts ``ARENA_POW_TTL`` seconds; then the session is asked
again (``static/trust/pow.js`` renews it before sending a prompt). ``pow_solve`` is the same solver as pow.js
for scripted clients (the simulated voters, the tests).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import itertools
import time
from collections.abc import Callable
from importlib import import_module

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import SessionProof
from .refusal import TrustRefusal

MAX_NONCE_CHARS = 32
# A challenge's period: an answer counts in the period its challenge was asked in and the next one.
CHALLENGE_SECONDS = 600


class ProofRefused(TrustRefusal):
    pass


def _period(now: float | None) -> int:
    return int((time.time() if now is None else now) // CHALLENGE_SECONDS)


def _challenge_of(session_key: str, period: int) -> str:
    message = f"arena-pow:{session_key}:{period}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()[:32]


def pow_challenge(session_key: str, *, now: float | None = None) -> str:
    """The session's challenge at ``now`` (a Unix time; the clock when None)."""
    return _challenge_of(session_key, _period(now))


def _leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def pow_answers(challenge: str, nonce: str, bits: int) -> bool:
    return _leading_zero_bits(hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()) >= bits


def pow_solve(challenge: str, bits: int) -> str:
    """The first nonce (a decimal counter, as pow.js counts) that answers the challenge."""
    for n in itertools.count():
        if pow_answers(challenge, str(n), bits):
            return str(n)
    raise AssertionError("unreachable")


def session_issued(session_key: str | None) -> bool:
    """True when the key names a live session in the session store, i.e. one the server issued and that has not
    expired. A cookie a client made up loads as nothing (Django drops the key)."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    store.load()
    return store.session_key is not None


def session_proof(session_key: str) -> SessionProof | None:
    return SessionProof.objects.filter(session_key=session_key).first()


def proof_live(proof: SessionProof | None, *, now: datetime.datetime | None = None) -> bool:
    """A proof counts until its ``expires_at`` (rows from before proofs expired have none: they count no more)."""
    return proof is not None and proof.expires_at is not None and proof.expires_at > (now or timezone.now())


def session_proved(session_key: str, *, now: datetime.datetime | None = None) -> bool:
    return not settings.ARENA_POW or proof_live(session_proof(session_key), now=now)


def proof_record(
    *, session_key: str, nonce: object, admit_new: Callable[[], None] | None = None,
    now: datetime.datetime | None = None,
) -> SessionProof | None:
    """Check the session's answer and remember it for ``ARENA_POW_TTL`` seconds; None when the proof of work is
    switched off. ``admit_new`` is called before a new proof (not a repeated answer) is stored and raises
    ``ProofRefused`` to refuse it: the view counts new sessions per address there. The caller has checked that
    the session was issued (``session_issued``)."""
    if not settings.ARENA_POW:
        return None
    now = now or timezone.now()
    if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_NONCE_CHARS:
        raise ProofRefused("Send the answer to the browser check as a short string.", code="proof_invalid", status=400)
    period = _period(now.timestamp())
    bits = settings.ARENA_POW_BITS
    if not any(pow_answers(_challenge_of(session_key, p), nonce, bits) for p in (period, period - 1)):
        raise ProofRefused(
            "That answer to the browser check is wrong or too old. Reload the page to try again.",
            code="proof_wrong", status=400,
        )
    existing = session_proof(session_key)
    if proof_live(existing, now=now):
        return existing  # the same answer sent twice: nothing new to count
    if admit_new is not None:
        admit_new()
    values = {"bits": bits, "expires_at": now + datetime.timedelta(seconds=settings.ARENA_POW_TTL)}
    try:
        with transaction.atomic():
            proof, _ = SessionProof.objects.update_or_create(session_key=session_key, defaults=values)
    except IntegrityError:  # two answers of one session at once: the other one created the row
        SessionProof.objects.filter(session_key=session_key).update(**values)
        proof = SessionProof.objects.get(session_key=session_key)
    return proof


def check_session_proved(session_key: str) -> None:
    """Refuse (403) a session with no proof, or one whose proof has expired, with a message that says which."""
    if not settings.ARENA_POW:
        return
    proof = session_proof(session_key)
    if proof_live(proof):
        return
    if proof is None:
        raise ProofRefused(
            "Your browser has not finished the arena's quick bot check yet. Wait a second and send again "
            "(the page needs JavaScript).",
            code="proof_required", status=403,
        )
    raise ProofRefused(
        "Your browser check has expired. Reload the page to renew it (it takes about a second).",
        code="proof_expired", status=403,
    )
