"""The proof of work's two requests: the session's challenge (GET) and its answer (POST), both as JSON.

Both answer only a session the server issued; a new proof is counted against the client's address (the
proxy-aware one the ASGI middleware puts in REMOTE_ADDR, as the battle socket's rate limits use)."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from arena.ratelimit import RateLimited, rate_limit_hit

from .pow import ProofRefused, pow_challenge, proof_live, proof_record, session_issued, session_proof

MAX_BODY_BYTES = 1024
NO_SESSION = "Your session has expired or was not issued by this site. Reload the page."


def _new_session_counted(session_key: str, ip: str) -> None:
    """Count one new proved session for the address; refuse it (429) when the address had its share."""
    try:
        rate_limit_hit("sessions", session_key=session_key, ip=ip, limit=settings.ARENA_RATE_LIMIT_SESSIONS)
    except RateLimited as exc:
        raise ProofRefused(
            f"Too many new sessions from your address just now. Please wait {exc.retry_after} s and reload the page.",
            code="rate_limited", status=429,
        ) from None


# No CSRF token needed: a forged answer could only be one for the victim's own challenge, which a third party
# cannot read, and a right answer only marks that session as a browser.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def proof(request: HttpRequest) -> JsonResponse:
    session_key = request.session.session_key
    if not settings.ARENA_POW:
        return JsonResponse({"required": False, "challenge": None, "bits": settings.ARENA_POW_BITS})
    if not session_issued(session_key):
        return JsonResponse({"code": "no_session", "message": NO_SESSION}, status=401)
    if request.method == "GET":
        found = session_proof(session_key)
        if proof_live(found):
            return JsonResponse({
                "required": False, "challenge": None, "bits": settings.ARENA_POW_BITS,
                "expires_in": int((found.expires_at - timezone.now()).total_seconds()),
            })
        return JsonResponse({
            "required": True, "challenge": pow_challenge(session_key), "bits": settings.ARENA_POW_BITS,
            "expired": found is not None,
        })
    if len(request.body) > MAX_BODY_BYTES:
        return JsonResponse({"code": "proof_invalid", "message": "That answer is too long."}, status=413)
    try:
        nonce = json.loads(request.body or b"{}").get("nonce")
    except (ValueError, AttributeError):
        return JsonResponse({"code": "proof_invalid", "message": "Send the answer as JSON: {\"nonce\": \"...\"}."},
                            status=400)
    ip = request.META.get("REMOTE_ADDR", "")
    try:
        found = proof_record(session_key=session_key, nonce=nonce,
                             admit_new=lambda: _new_session_counted(session_key, ip))
    except ProofRefused as exc:
        return JsonResponse({"code": exc.code, "message": exc.message}, status=exc.status)
    return JsonResponse({"proved": True, "expires_in": int((found.expires_at - timezone.now()).total_seconds())})
