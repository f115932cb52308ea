"""An imported prompt has the arena's one prompt limit (ARENA_MAX_PROMPT_CHARS), like a prompt typed in it."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from arena.models import Battle
from arena.services import BattleError, check_prompt
from leaderboard.imports import battles_import
from models_hub.models import ModelEntry


def _record(prompt: str) -> str:
    turn = lambda answer: [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]  # noqa: E731
    return json.dumps({"model_a": "A", "model_b": "B", "winner": "tie", "conversation_a": turn("a"),
                       "conversation_b": turn("b")}) + "\n"


def test_an_import_with_a_prompt_over_the_limit_names_its_line_and_imports_nothing(db, tmp_path, settings):
    """Tried: a file whose third record holds a prompt one character over the limit (a 30 MB prompt was being
    categorised after 9.5 minutes before). The command names the line, the size and the limit, and writes
    nothing, also not the two good records before it; a prompt at the limit is taken, as the arena takes it."""
    settings.ARENA_MAX_PROMPT_CHARS = 300
    path = tmp_path / "long.jsonl"
    path.write_text(_record("hi") + _record("x" * 300) + _record("y" * 301))
    with pytest.raises(CommandError, match=r"long\.jsonl: line 3: conversation_a: prompt 1 is 301 characters long; "
                                           r"the limit is 300.*nothing was imported"):
        call_command("import_battles", str(path), "--quiet")
    assert (Battle.objects.count(), ModelEntry.objects.count()) == (0, 0)
    assert check_prompt("x" * 300) == "x" * 300
    with pytest.raises(BattleError) as refused:
        check_prompt("y" * 301)
    assert (refused.value.code, refused.value.status) == ("prompt_too_long", 413)
    path.write_text(_record("hi") + _record("x" * 300))
    assert battles_import(path).created == 2
