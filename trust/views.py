"""The proof of work's two requests: the session's challenge (GET) and its answer (POST), both as JSON."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .pow import ProofRefused, pow_challenge, proof_record, session_proved

MAX_BODY_BYTES = 1024


# No CSRF token needed: a forged answer could only be one for the victim's own challenge, which a third party
# cannot read, and a right answer only marks that session as a browser.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def proof(request: HttpRequest) -> JsonResponse:
    session_key = request.session.session_key
    if not session_key:
        return JsonResponse({"code": "no_session", "message": "Your session has expired. Reload the page."}, status=401)
    if request.method == "GET":
        proved = session_proved(session_key)
        return JsonResponse({
            "required": not proved,
            "challenge": None if proved else pow_challenge(session_key),
            "bits": settings.ARENA_POW_BITS,
        })
    if len(request.body) > MAX_BODY_BYTES:
        return JsonResponse({"code": "proof_invalid", "message": "That answer is too long."}, status=413)
    try:
        nonce = json.loads(request.body or b"{}").get("nonce")
    except (ValueError, AttributeError):
        return JsonResponse({"code": "proof_invalid", "message": "Send the answer as JSON: {\"nonce\": \"...\"}."},
                            status=400)
    try:
        proof_record(session_key=session_key, nonce=nonce)
    except ProofRefused as exc:
        return JsonResponse({"code": exc.code, "message": exc.message}, status=exc.status)
    return JsonResponse({"proved": True})
