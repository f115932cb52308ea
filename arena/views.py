from __future__ import annotations


from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from .selectors import health_check, models_choosable


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    parts = health_check()
    failing = [name for name, state in parts.items() if state != "ok"]
    status = 503 if failing else 200
    return JsonResponse({"status": "ok" if not failing else "unavailable", "failing": failing, "parts": parts}, status=status)


def _battle_page(request: HttpRequest, mode: str) -> HttpResponse:
    # The websocket finds the voter's battles by session, so every visitor gets one before the page loads.
    if not request.session.session_key:
        request.session["arena"] = True
        request.session.save()
    config = {
        "mode": mode,
        "maxPromptChars": settings.ARENA_MAX_PROMPT_CHARS,
        "maxTurns": settings.ARENA_MAX_TURNS,
        "models": models_choosable() if mode != "anonymous" else [],
    }
    return render(request, "arena/battle.html", {"mode": mode, "nav": mode, "config": config})


@require_GET
@never_cache
@ensure_csrf_cookie
def battle_anonymous(request: HttpRequest) -> HttpResponse:
    return _battle_page(request, "anonymous")


@require_GET
@never_cache
@ensure_csrf_cookie
def battle_named(request: HttpRequest) -> HttpResponse:
    return _battle_page(request, "named")


@require_GET
@never_cache
@ensure_csrf_cookie
def chat_direct(request: HttpRequest) -> HttpResponse:
    return _battle_page(request, "direct")
