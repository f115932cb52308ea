"""Text to IPA phonemes for the neural voices, by espeak-ng run as a separate process (it is GPL-3.0).

Piper and Kokoro were both trained on espeak-ng's IPA, so both read what this returns. espeak-ng drops
punctuation from its phoneme output; the clause splitting here keeps each clause's closing mark, which the models
read as a pause or an intonation.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

from django.conf import settings

from .base import GenerationError

logger = logging.getLogger(__name__)
# A clause ends at one of these (kept), followed by a space or the end of the text: "3.5" and "e.g." stay whole.
_CLAUSE = re.compile(r"(.+?)([.!?;:,…]+)(?=\s|$)|(.+?)$", re.DOTALL)
ENGINE_MISSING = "The speech engine is not installed on the server."
ENGINE_FAILED = "The speech engine failed on this text."


def text_clauses(text: str) -> list[tuple[str, str]]:
    """[(clause, closing punctuation)] in order; the punctuation is "" for a clause that ends the text bare."""
    clauses = []
    for match in _CLAUSE.finditer(" ".join(text.split())):
        words = (match.group(1) or match.group(3) or "").strip()
        mark = match.group(2) or ""
        if words or mark:
            clauses.append((words, mark))
    return clauses


def ipa_clauses(text: str, espeak_voice: str) -> list[str]:
    """The text as IPA, one string per clause with its closing punctuation, in espeak-ng voice `espeak_voice`.

    One espeak-ng process reads every clause, one a line ending in " ." so that espeak-ng ends its clause there and
    answers one line per clause; the text goes in on stdin (``-b 1``: UTF-8), so nothing in it can become an option."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise GenerationError(ENGINE_MISSING)
    clauses = [c for c in text_clauses(text) if c[0]]
    if not clauses:
        return []
    marked = "\n".join(f"{words} ." for words, _ in clauses)
    try:
        done = subprocess.run(
            [binary, "-q", "--ipa", "-b", "1", "-v", espeak_voice], input=marked.encode("utf-8"),
            capture_output=True, timeout=settings.ARENA_SPEECH_ENGINE_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        logger.warning("espeak-ng phonemisation timed out (%s)", espeak_voice)
        raise GenerationError(ENGINE_FAILED) from exc
    lines = [line.strip() for line in done.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        logger.warning("espeak-ng phonemisation failed (%s): exit %s, %r", espeak_voice, done.returncode,
                       done.stderr[:300])
        raise GenerationError(ENGINE_FAILED)
    if len(lines) != len(clauses):  # espeak-ng split a clause further: read it as one clause, punctuation at the end
        return [" ".join(lines) + (clauses[-1][1] or ".")]
    return [ipa + (mark or ".") for ipa, (_, mark) in zip(lines, clauses)]
