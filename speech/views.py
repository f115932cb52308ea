"""Voice battle pages and their JSON endpoints. Thin: parse, call one service or selector, answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from arena.services import BattleError

from .delivery import RangeNotSatisfiable, achunks_then, byte_range, chunks_then
from .leaderboard import speech_board, speech_snapshot_latest
from .selectors import speech_battle_state
from .services import (
    EXAMPLE_TEXTS, clip_delivered, clip_serve, speech_battle_create, speech_battle_owned, speech_vote_record,
)


def _answers_battle_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except BattleError as exc:
            return JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)

    return wrapped


def _json_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BattleError("The request is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BattleError("The request must be a JSON object.", code="invalid_json")
    return body


def _session_key(request: HttpRequest) -> str:
    if not request.session.session_key:
        raise BattleError("Your session has expired. Reload the page.", code="no_session", status=401)
    return request.session.session_key


def _ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


@require_GET
@never_cache
@ensure_csrf_cookie
def speech_page(request: HttpRequest) -> HttpResponse:
    if not request.session.session_key:
        request.session["arena"] = True
        request.session.save()
    config = {"maxChars": settings.ARENA_SPEECH_MAX_CHARS, "examples": list(EXAMPLE_TEXTS)}
    return render(request, "speech/battle.html", {"nav": "speech", "config": config})


@require_POST
@never_cache
@_answers_battle_errors
def battle_create(request: HttpRequest) -> JsonResponse:
    body = _json_body(request)
    battle = speech_battle_create(session_key=_session_key(request), ip=_ip(request), text=body.get("text"))
    return JsonResponse(speech_battle_state(battle), status=201)


@require_GET
@never_cache
@_answers_battle_errors
def battle_state(request: HttpRequest, public_id: str) -> JsonResponse:
    battle = speech_battle_owned(public_id=public_id, session_key=_session_key(request))
    return JsonResponse(speech_battle_state(battle))


@require_GET
@never_cache
@_answers_battle_errors
def clip_audio(request: HttpRequest, public_id: str, side: str) -> HttpResponse:
    """The clip, streamed; it counts as delivered only when a response with all of its bytes went out in full."""
    clip = clip_serve(public_id=public_id, session_key=_session_key(request), side=side)
    size = len(clip.data)
    try:
        part = byte_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    start, end = part or (0, size)
    whole = (start, end) == (0, size)
    body = clip.data[start:end]
    if isinstance(request, ASGIRequest):
        content = achunks_then(body, (lambda: sync_to_async(clip_delivered)(clip)) if whole else None)
    else:
        content = chunks_then(body, (lambda: clip_delivered(clip)) if whole else None)
    response = StreamingHttpResponse(content, content_type="audio/wav", status=206 if part else 200)
    response["Content-Length"] = str(end - start)
    response["Accept-Ranges"] = "bytes"
    if part:
        response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    # Named by the side only: neither the stored name nor anything of the model reaches the voter.
    response["Content-Disposition"] = f'inline; filename="{side}.wav"'
    return response


@require_POST
@never_cache
@_answers_battle_errors
def battle_vote(request: HttpRequest, public_id: str) -> JsonResponse:
    body = _json_body(request)
    session_key = _session_key(request)
    speech_vote_record(public_id=public_id, session_key=session_key, ip=_ip(request), choice=body.get("choice"))
    battle = speech_battle_owned(public_id=public_id, session_key=session_key)
    return JsonResponse(speech_battle_state(battle))


@require_GET
def leaderboard_page(request: HttpRequest) -> HttpResponse:
    snapshot = speech_snapshot_latest()
    staff = request.user.is_authenticated and request.user.is_staff
    board = speech_board(snapshot, staff=staff) if snapshot is not None else None
    return render(request, "speech/leaderboard.html", {"nav": "speech-leaderboard", "snapshot": snapshot, "board": board})
