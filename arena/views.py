from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from .models import REASON_TAGS
from .selectors import battle_shared, health_check, models_choosable

FAVICON = Path(__file__).resolve().parent.parent / "static" / "arena" / "favicon.ico"


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
        "paced": settings.ARENA_PACE and mode == "anonymous",
        "models": models_choosable() if mode != "anonymous" else [],
        "reasonTags": REASON_TAGS if mode != "direct" else {},
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


@require_GET
@never_cache
def battle_share(request: HttpRequest, public_id: str) -> HttpResponse:
    """A voted battle, read-only, for anyone with its link. Before its vote the link answers 404, like a missing
    battle: nothing about an unvoted battle, its names least of all, is shown."""
    state = battle_shared(public_id)
    if state is None:
        raise Http404("No voted battle at this address.")
    return render(request, "arena/shared.html", {"state": state, "nav": "anonymous"})


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    # Browsers ask for /favicon.ico whatever the page links; answering it keeps 404s out of every page's log.
    return HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")
