"""The moderation hook: every prompt is checked before any model sees it.

Two checks, either or both: ``ARENA_MODERATION_BLOCKLIST`` (words or phrases, matched case-insensitively as
whole words) and, when ``ARENA_MODERATION_URL`` is set, an OpenAI-compatible moderation endpoint
(``POST {url}/moderations`` with ``{"model", "input"}``, answered with ``{"results": [{"flagged", "categories"}]}``;
OpenAI's own, or any server that speaks it). A refused prompt raises ``PromptRefused`` with a clear message and
is kept in ``ModerationRefusal`` for staff. If the endpoint cannot be asked, the prompt is refused too (503):
an unchecked prompt is not sent on.

Exports leave out battles whose prompts the blocklist flags now (``prompt_flagged``), unless asked for: a
blocklist grows, and battles from before a word was added are then flagged too.
"""

from __future__ import annotations

import functools
import logging
import os
import re

import httpx
from django.conf import settings

from .models import ModerationRefusal
from .refusal import TrustRefusal

logger = logging.getLogger(__name__)

REFUSED = "This prompt goes against the arena's content rules, so it was not sent to any model. Please ask something else."
UNAVAILABLE = "The arena's prompt check is unavailable just now, so nothing was sent to a model. Please try again shortly."


class PromptRefused(TrustRefusal):
    pass


@functools.lru_cache(maxsize=8)
def _blocklist_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    words = [re.escape(t.strip().lower()) for t in terms if t.strip()]
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.IGNORECASE)


def blocklist_hit(text: str) -> bool:
    pattern = _blocklist_pattern(tuple(settings.ARENA_MODERATION_BLOCKLIST))
    return pattern is not None and pattern.search(text) is not None


def prompt_flagged(prompts: list[str]) -> bool:
    """True when any of a battle's prompts is flagged by the current blocklist (exports leave such battles out)."""
    return any(blocklist_hit(p) for p in prompts)


def endpoint_categories(prompt: str) -> list[str] | None:
    """The categories the moderation endpoint flags the prompt for; None when it is not flagged.
    Raises ``httpx.HTTPError`` or ``ValueError`` when the endpoint cannot be asked or answers nonsense."""
    headers = {}
    if settings.ARENA_MODERATION_API_KEY_ENV:
        key = os.environ.get(settings.ARENA_MODERATION_API_KEY_ENV, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
    timeout = httpx.Timeout(connect=settings.ARENA_OPENAI_CONNECT_TIMEOUT, read=settings.ARENA_OPENAI_READ_TIMEOUT,
                            write=10.0, pool=10.0)
    response = httpx.post(
        settings.ARENA_MODERATION_URL.rstrip("/") + "/moderations",
        json={"model": settings.ARENA_MODERATION_MODEL, "input": prompt}, headers=headers, timeout=timeout,
    )
    response.raise_for_status()
    results = response.json().get("results")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ValueError("the moderation endpoint's answer has no results")
    if not any(r.get("flagged") for r in results if isinstance(r, dict)):
        return None
    return sorted({name for r in results if isinstance(r, dict)
                   for name, hit in (r.get("categories") or {}).items() if hit})


def check_prompt_allowed(*, prompt: str, session_key: str, ip_hash: str) -> None:
    """Raise PromptRefused unless the prompt passes the blocklist and (when configured) the endpoint."""
    source, categories = None, []
    if blocklist_hit(prompt):
        source = ModerationRefusal.Source.BLOCKLIST
    elif settings.ARENA_MODERATION_URL:
        try:
            flagged = endpoint_categories(prompt)
        except (httpx.HTTPError, ValueError):
            logger.warning("the moderation endpoint could not be asked; refusing the prompt", exc_info=True)
            raise PromptRefused(UNAVAILABLE, code="moderation_unavailable", status=503) from None
        if flagged is not None:
            source, categories = ModerationRefusal.Source.ENDPOINT, flagged
    if source is None:
        return
    ModerationRefusal.objects.create(
        session_key=session_key, ip_hash=ip_hash, source=source, categories=categories, prompt=prompt[:2000]
    )
    raise PromptRefused(REFUSED, code="prompt_refused", status=422)
