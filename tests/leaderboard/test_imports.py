"""Imports of battle files: LLMFAO's real judgements give the ratings command line's numbers; malformed files name
the line and change nothing; a re-import adds nothing."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from leaderboard.imports import BattleImportError, battles_import
from leaderboard.snapshots import leaderboard_snapshot_create
from arena.models import Battle, Side, Vote
from leaderboard.models import ImportedBattle
from leaderboard.exports import rankings_csv
from models_hub.models import ModelEntry
from tests.data import fixture_data

ROOT = Path(__file__).resolve().parents[2]


def counts() -> tuple[int, ...]:
    return (Battle.objects.count(), Side.objects.count(), Vote.objects.count(), ModelEntry.objects.count(),
            ImportedBattle.objects.count())


@pytest.fixture
def llmfao() -> Path:
    return fixture_data("llmfao", "battles.csv")


def test_llmfao_imported_gives_the_scores_of_the_ratings_command_line(db, llmfao):
    call_command("import_battles", str(llmfao), "--quiet")
    assert Vote.objects.count() == 8931
    snapshot = leaderboard_snapshot_create()
    assert snapshot.votes_used == 8931
    ours = list(csv.DictReader(io.StringIO(rankings_csv(snapshot, category="overall", style=False, staff=True))))
    cli = subprocess.run([sys.executable, "-m", "ratings", str(llmfao)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    theirs = list(csv.DictReader(io.StringIO(cli)))
    assert len(ours) == len(theirs) == 59
    assert [r["model"] for r in ours] == [r["model"] for r in theirs]
    for a, b in zip(ours, theirs):
        for column in ("score", "lower", "upper"):
            assert float(a[column]) == pytest.approx(float(b[column]), abs=2e-4), (a["model"], column)
        assert a["rank"] == b["rank"] and a["votes"] == b["votes"]
    assert ModelEntry.objects.filter(is_active=False, sampling_weight=0, pool="imported").count() == 59


def test_a_second_import_of_the_same_file_adds_nothing(db, tmp_path):
    path = tmp_path / "b.csv"
    # Two identical records on different lines are two battles, as in LLMFAO's own file.
    path.write_text("model_a,model_b,winner\nA,B,model_a\nA,B,model_a\nB,C,tie\n")
    first = battles_import(path)
    assert (first.created, first.skipped) == (3, 0)
    before = counts()
    second = battles_import(path)
    assert (second.created, second.skipped) == (0, 3)
    assert counts() == before


@pytest.mark.parametrize("body, line, message", [
    ("model_a,model_b,winner\nA,B,model_a\nA,C,tie\nA,B,model_c\nB,C,tie\n", 4, "unknown winner 'model_c'"),
    ("model_a,model_b,winner\nA,B,model_a\nA,A,tie\n", 3, "battles itself"),
    ("model_a,model_b,winner\nA,B,model_a\n,B,tie\n", 3, "empty model name"),
    ("model_a,model_b,winner\nA,B,model_a,extra\n", 2, "more fields than the header"),
    ("model_a,model_b\nA,B\n", 1, "missing column(s) winner"),
    ("model_a,model_b,winner,modality\nA,B,model_a,text\nB,C,tie,video\n", 3, "unknown modality 'video'"),
    ("model_a,model_b,winner,modality\nB,C,model_a,text\nC,D,tie,speech\n", 3,
     "model 'C' is a text model on line 2, speech here"),
    # A is a text model here (the entry below); a voice battle of A is refused.
    ("model_a,model_b,winner,modality\nA,V,model_a,speech\n", 2, "model 'A' is a text model in this arena"),
])
def test_a_malformed_csv_record_names_its_line_and_changes_nothing(db, tmp_path, body, line, message):
    ModelEntry.objects.create(slug="a", display_name="A")
    path = tmp_path / "bad.csv"
    path.write_text(body)
    before = counts()
    with pytest.raises(BattleImportError) as caught:
        battles_import(path)
    assert f"bad.csv: line {line}: " in str(caught.value) and message in str(caught.value)
    assert counts() == before


def test_a_malformed_json_line_names_its_line_through_the_command_and_imports_nothing(db, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"model_a": "A", "model_b": "B", "winner": "model_a"}\n'
        '{"model_a": "A", "model_b": "C", "winner": "tie", "conversation_a": [{"role": "user", "content": "hi"},'
        ' {"role": "assistant", "content": "yo"}], "conversation_b": [{"role": "user", "content": "hi"},'
        ' {"role": "assistant", "content": "hey"}]}\n'
        '{"model_a": "A", "model_b": "B", "winner": \n'
    )
    with pytest.raises(CommandError, match=r"bad.jsonl: line 3: not valid JSON.*nothing was imported"):
        call_command("import_battles", str(path), "--quiet")
    assert counts() == (0, 0, 0, 0, 0)


def test_an_import_that_fails_while_writing_leaves_nothing_behind(db, tmp_path, monkeypatch):
    path = tmp_path / "ok.csv"
    path.write_text("model_a,model_b,winner\nA,B,model_a\nB,C,tie\n")
    from leaderboard.models import ImportedBattle as Marker

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(Marker.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        battles_import(path)
    assert counts() == (0, 0, 0, 0, 0)


def test_imported_conversations_keep_their_categories_and_anony_flag(db, tmp_path):
    path = tmp_path / "conv.jsonl"
    path.write_text(
        '{"model_a": "A", "model_b": "B", "winner": "model_b", "anony": false, "tstamp": 1700000000.5,'
        ' "conversation_a": [{"role": "user", "content": "Write a python function"}, {"role": "assistant",'
        ' "content": "def f(): pass"}], "conversation_b": [{"role": "user", "content": "Write a python function"},'
        ' {"role": "assistant", "content": [{"type": "text", "text": "def g(): pass"}]}]}\n'
    )
    battles_import(path)
    battle = Battle.objects.get()
    assert battle.mode == "named" and "coding" in battle.categories and "lang:en" in battle.categories
    assert battle.vote.choice == "right" and battle.vote.created_at.timestamp() == 1700000000.5
    right = battle.sides.get(position="right").turns.get()
    assert right.response == "def g(): pass" and right.status == "done"


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_reimport_with_lines_added_around_the_records_adds_nothing(db, tmp_path, kind):
    """Tried: the same three records again with a blank line put first (and, for JSON lines, another at the end).
    Before, a record's identity held its line number, so 2 of 3 records were imported twice."""
    if kind == "csv":
        body = "model_a,model_b,winner\nA,B,model_a\nA,B,model_a\nB,C,tie\n"
        shifted = "\n" + body
    else:
        rows = ['{"model_a": "A", "model_b": "B", "winner": "model_a"}'] * 2 + ['{"model_a": "B", "model_b": "C", "winner": "tie"}']
        body = "\n".join(rows) + "\n"
        shifted = "\n" + "\n\n".join(rows) + "\n\n"
    (tmp_path / f"first.{kind}").write_text(body)
    (tmp_path / f"again.{kind}").write_text(shifted)
    assert battles_import(tmp_path / f"first.{kind}").created == 3
    before = counts()
    again = battles_import(tmp_path / f"again.{kind}")
    assert (again.created, again.skipped) == (0, 3)
    assert counts() == before
    # A third identical record is a new vote, and only it is added.
    (tmp_path / f"more.{kind}").write_text(shifted + (rows[0] + "\n" if kind == "jsonl" else "A,B,model_a\n"))
    assert battles_import(tmp_path / f"more.{kind}").created == 1


@pytest.mark.parametrize("content, line, says", [
    ('{"model_a": "A", "model_b": "B", "winner": "tie"}\n{"model_a": "A\\u0000", "model_b": "B", "winner": "tie"}\n',
     2, "NUL"),
    ('{"model_a": "A", "model_b": "B", "winner": "tie"}\n{"model_a": "A", "model_b": "B", "winner": "tie", '
     '"conversation_a": [{"role": "user", "content": "hi\\u0000"}, {"role": "assistant", "content": "x"}], '
     '"conversation_b": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "y"}]}\n', 2, "NUL"),
    ("model_a,model_b,winner\nA,B,tie\nA\x00,B,tie\n", 3, "NUL"),
    ('{"model_a": "A", "model_b": "B", "winner": "tie"}\n\n{"model_a": "A", "model_b": "B", "winner": "tie", "x": '
     + "[" * 2000 + "]" * 2000 + "}\n", 3, "deep"),
    ('{"model_a": "A", "model_b": "B", "winner": "tie", "x": ' + "[" * 40 + "]" * 40 + "}\n", 1, "deep"),
])
def test_nul_bytes_and_deep_nesting_get_an_error_naming_the_line(db, tmp_path, content, line, says):
    """Tried: a NUL character (escaped in JSON, raw in CSV) and JSON nested 2,000 and 40 deep. Before, these ended
    in a traceback (PostgreSQL refusing NUL, RecursionError) that named no line; now the error names it and
    nothing is written."""
    path = tmp_path / "bad.txt"
    path.write_text(content)
    before = counts()
    with pytest.raises(BattleImportError, match=rf"bad\.txt: line {line}: .*{says}"):
        battles_import(path)
    assert counts() == before


def test_voice_battles_come_back_as_voice_battles_and_stay_off_the_text_board(db, tmp_path):
    path = tmp_path / "voices.csv"
    path.write_text("model_a,model_b,winner,modality\nAlto,Bass,model_a,speech\nBass,Alto,model_b,speech\n"
                    "T1,T2,model_a,\nT2,T1,tie,text\n")
    result = battles_import(path)
    assert result.created == 4
    modality = dict(ModelEntry.objects.values_list("display_name", "modality"))
    assert modality == {"Alto": "speech", "Bass": "speech", "T1": "text", "T2": "text"}
    snapshot = leaderboard_snapshot_create()
    rated = {r["model_id"] for r in snapshot.payload["categories"]["overall"]["models"]}
    assert rated == set(ModelEntry.objects.filter(display_name__in=["T1", "T2"]).values_list("pk", flat=True)), "voice votes never reach the text board"
    # A second import of the same file, modality and all, adds nothing.
    assert battles_import(path).created == 0
