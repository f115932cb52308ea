"""The moderation hook: every prompt is checked before any model sees it.

Two checks, either or both: ``ARENA_MODERATION_BLOCKLIST`` (words or phrases) and, when ``ARENA_MODERATION_URL``
is set, an OpenAI-compatible moderation endpoint (``POST {url}/moderations`` with ``{"model", "input"}``, answered
with ``{"results": [{"flagged", "categories"}]}``; OpenAI's own, or any server that speaks it). A refused prompt
raises ``PromptRefused`` with a clear message and is kept in ``ModerationRefusal`` for staff. If the endpoint
cannot be asked within ``ARENA_MODERATION_TIMEOUT``, the prompt is refused too (503): an unchecked prompt is not
sent on.

The blocklist compares normalised words, not raw text, so that the usual disguises do not pass: Unicode NFKC
(full-width letters), case folding, combining marks dropped (dotted letters), zero-width and other invisible
format characters dropped, any run of spaces or newlines as one break, and a trailing "s" or "es" on a word
tolerated (plurals). A phrase matches a run of whole words; the scan is one pass over the prompt's words.

The check is split so that the socket can await the endpoint on its event loop, before any database thread or
row lock is taken: ``moderation_verdict_async`` (no database), then ``refusal_record`` (one insert) only when a
prompt is refused. ``check_prompt_allowed`` is the synchronous whole, for synchronous views; it must not be
called inside a transaction, where it would hold the transaction open for the endpoint's round trip.

Exports leave out battles whose prompts the blocklist flags now (``prompt_flagged``), unless asked for: a
blocklist grows, and battles from before a word was added are then flagged too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import unicodedata
from typing import NoReturn

import httpx
from django.conf import settings

from .models import ModerationRefusal
from .refusal import TrustRefusal

logger = logging.getLogger(__name__)

REFUSED = "This prompt goes against the arena's content rules, so it was not sent to any model. Please ask something else."
UNAVAILABLE = "The arena's prompt check is unavailable just now, so nothing was sent to a model. Please try again shortly."

class PromptRefused(TrustRefusal):
    pass


# A blocklist verdict: where the refusal came from and the endpoint's categories (none for the blocklist).
Verdict = tuple[str, list[str]]

_words = re.compile(r"[^\W_]+")  # one pass, no backtracking: a run of letters and digits, then the next one


def normalised_words(text: str) -> list[str]:
    """The words of ``text`` as the blocklist compares them: NFKC, case folded, combining marks and invisible
    format characters (zero-width space and joiners, soft hyphen, BOM: Unicode category Cf) removed, split at
    anything that is not a letter or digit (underscores too). Every step is one pass over the text."""
    if text.isascii():  # nothing to normalise but the case (exports check every stored prompt)
        return _words.findall(text.lower())
    folded = unicodedata.normalize("NFKC", text).casefold()
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", folded)
        if not unicodedata.combining(c) and unicodedata.category(c) != "Cf"
    )
    return _words.findall(unicodedata.normalize("NFC", stripped))


def _stems(word: str) -> tuple[str, ...]:
    """The forms a blocklisted word may stand for: itself, and without a plural "s" or "es"."""
    forms = [word]
    if len(word) > 3 and word.endswith("es"):
        forms.append(word[:-2])
    if len(word) > 2 and word.endswith("s"):
        forms.append(word[:-1])
    return tuple(forms)


@functools.lru_cache(maxsize=8)
def _blocklist_index(terms: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    """The blocklist's phrases (each a tuple of normalised words) by their first word."""
    index: dict[str, list[tuple[str, ...]]] = {}
    for term in terms:
        phrase = tuple(normalised_words(term))
        if phrase:
            index.setdefault(phrase[0], []).append(phrase)
    return index


def blocklist_hit(text: str) -> bool:
    """True when the normalised words of ``text`` hold a blocklisted phrase as a run of whole words (each word
    of the text also read without a plural ending). Work: per word of the text, the phrases that start with it,
    each compared word by word: linear in the text for a given blocklist."""
    index = _blocklist_index(tuple(settings.ARENA_MODERATION_BLOCKLIST))
    if not index:
        return False
    words = normalised_words(text)
    for i, word in enumerate(words):
        for stem in _stems(word):
            for phrase in index.get(stem, ()):
                if len(phrase) <= len(words) - i and all(
                    phrase[k] in _stems(words[i + k]) for k in range(1, len(phrase))
                ):
                    return True
    return False


def prompt_flagged(prompts: list[str]) -> bool:
    """True when any of a battle's prompts is flagged by the current blocklist (exports leave such battles out)."""
    return any(blocklist_hit(p) for p in prompts)


def _request() -> tuple[str, dict[str, str], httpx.Timeout]:
    """The endpoint's URL, the headers (the API key, when named) and the timeout of one moderation request."""
    headers = {}
    if settings.ARENA_MODERATION_API_KEY_ENV:
        key = os.environ.get(settings.ARENA_MODERATION_API_KEY_ENV, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
    limit = settings.ARENA_MODERATION_TIMEOUT
    timeout = httpx.Timeout(limit, connect=min(limit, settings.ARENA_OPENAI_CONNECT_TIMEOUT))
    return settings.ARENA_MODERATION_URL.rstrip("/") + "/moderations", headers, timeout


def _flagged_categories(response: httpx.Response) -> list[str] | None:
    response.raise_for_status()
    results = response.json().get("results")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ValueError("the moderation endpoint's answer has no results")
    if not any(r.get("flagged") for r in results if isinstance(r, dict)):
        return None
    return sorted({name for r in results if isinstance(r, dict)
                   for name, hit in (r.get("categories") or {}).items() if hit})


def endpoint_categories(prompt: str) -> list[str] | None:
    """The categories the moderation endpoint flags the prompt for; None when it is not flagged.
    Raises ``httpx.HTTPError`` or ``ValueError`` when the endpoint cannot be asked or answers nonsense."""
    url, headers, timeout = _request()
    body = {"model": settings.ARENA_MODERATION_MODEL, "input": prompt}
    return _flagged_categories(httpx.post(url, json=body, headers=headers, timeout=timeout))


async def endpoint_categories_async(prompt: str) -> list[str] | None:
    """``endpoint_categories`` on the event loop: the socket waits for the endpoint without holding a thread."""
    url, headers, timeout = _request()
    body = {"model": settings.ARENA_MODERATION_MODEL, "input": prompt}
    async with asyncio.timeout(settings.ARENA_MODERATION_TIMEOUT), httpx.AsyncClient(timeout=timeout) as client:
        response = await client.post(url, json=body, headers=headers)
    return _flagged_categories(response)


def _unavailable() -> PromptRefused:
    logger.warning("the moderation endpoint could not be asked; refusing the prompt", exc_info=True)
    return PromptRefused(UNAVAILABLE, code="moderation_unavailable", status=503)


def moderation_verdict(prompt: str) -> Verdict | None:
    """Why the prompt is refused (source, categories), None when it passes. No database; raises PromptRefused
    (503) when the endpoint cannot be asked."""
    if blocklist_hit(prompt):
        return ModerationRefusal.Source.BLOCKLIST, []
    if not settings.ARENA_MODERATION_URL:
        return None
    try:
        flagged = endpoint_categories(prompt)
    except (httpx.HTTPError, ValueError):
        raise _unavailable() from None
    return None if flagged is None else (ModerationRefusal.Source.ENDPOINT, flagged)


async def moderation_verdict_async(prompt: str) -> Verdict | None:
    """``moderation_verdict`` for the event loop: the endpoint asked with an async client, no thread held."""
    if blocklist_hit(prompt):
        return ModerationRefusal.Source.BLOCKLIST, []
    if not settings.ARENA_MODERATION_URL:
        return None
    try:
        flagged = await endpoint_categories_async(prompt)
    except (httpx.HTTPError, ValueError, TimeoutError):
        raise _unavailable() from None
    return None if flagged is None else (ModerationRefusal.Source.ENDPOINT, flagged)


def refusal_record(*, verdict: Verdict, prompt: str, session_key: str, ip_hash: str) -> NoReturn:
    """Keep the refused prompt for staff and raise PromptRefused (422)."""
    source, categories = verdict
    ModerationRefusal.objects.create(
        session_key=session_key, ip_hash=ip_hash, source=source, categories=categories, prompt=prompt[:2000]
    )
    raise PromptRefused(REFUSED, code="prompt_refused", status=422)


def check_prompt_allowed(*, prompt: str, session_key: str, ip_hash: str) -> None:
    """Raise PromptRefused unless the prompt passes the blocklist and (when configured) the endpoint. Synchronous;
    never call it inside a transaction (see the module's docstring)."""
    verdict = moderation_verdict(prompt)
    if verdict is not None:
        refusal_record(verdict=verdict, prompt=prompt, session_key=session_key, ip_hash=ip_hash)
