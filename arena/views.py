from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .selectors import health_check


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    parts = health_check()
    failing = [name for name, state in parts.items() if state != "ok"]
    status = 503 if failing else 200
    return JsonResponse({"status": "ok" if not failing else "unavailable", "failing": failing, "parts": parts}, status=status)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "arena/home.html")
