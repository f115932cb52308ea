"""Which voices read a battle's text: the text's language comes from the text arena's own detector
(``arena.categories.prompt_language``), and a voice reads the languages its model entry lists (blank: any)."""

from __future__ import annotations

from collections.abc import Iterable

from arena.categories import prompt_language
from arena.models import Battle
from models_hub.models import ModelEntry

__all__ = ["battle_language", "prompt_language", "voices_reading"]


def voices_reading(entries: Iterable[ModelEntry], language: str) -> list[ModelEntry]:
    """The entries that read `language` (ISO 639-1; "und", a text too short to tell, is read by every voice)."""
    return [e for e in entries if e.reads(language)]


def battle_language(battle: Battle) -> str | None:
    """The battle's text language (its ``lang:`` category, set at creation), None when it could not be told."""
    return next((tag[5:] for tag in battle.categories if tag.startswith("lang:")), None)
