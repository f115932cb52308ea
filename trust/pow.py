"""A proof of work before a new session's first battle: cheap for one browser, costly for a farm of sessions.

The challenge is an HMAC of the session key under SECRET_KEY, so it needs no storage and cannot be reused by
another session. A nonce answers it when SHA-256("<challenge>:<nonce>") starts with ``ARENA_POW_BITS`` zero
bits (16 bits: about 65 000 hashes, well under a second in a browser). A solved session gets a
``SessionProof`` row and is never asked again. ``static/trust/pow.js`` is the browser's solver; ``solve``
here is the same for scripted clients (the simulated voters, the tests).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools

from django.conf import settings
from django.db import IntegrityError

from .models import SessionProof
from .refusal import TrustRefusal

MAX_NONCE_CHARS = 32


class ProofRefused(TrustRefusal):
    pass


def pow_challenge(session_key: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"arena-pow:{session_key}".encode(), hashlib.sha256).hexdigest()[:32]


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


def session_proved(session_key: str) -> bool:
    return not settings.ARENA_POW or SessionProof.objects.filter(session_key=session_key).exists()


def proof_record(*, session_key: str, nonce: object) -> SessionProof | None:
    """Check the session's answer and remember it; None when the proof of work is switched off."""
    if not settings.ARENA_POW:
        return None
    if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_NONCE_CHARS:
        raise ProofRefused("Send the answer to the browser check as a short string.", code="proof_invalid", status=400)
    if not pow_answers(pow_challenge(session_key), nonce, settings.ARENA_POW_BITS):
        raise ProofRefused(
            "That answer to the browser check is wrong. Reload the page to try again.", code="proof_wrong", status=400
        )
    try:
        proof, _ = SessionProof.objects.get_or_create(session_key=session_key, defaults={"bits": settings.ARENA_POW_BITS})
    except IntegrityError:  # two answers of one session at once: the other one stored it
        proof = SessionProof.objects.get(session_key=session_key)
    return proof


def check_session_proved(session_key: str) -> None:
    if not session_proved(session_key):
        raise ProofRefused(
            "Your browser has not finished the arena's quick bot check yet. Wait a second and send again "
            "(the page needs JavaScript).",
            code="proof_required", status=403,
        )
