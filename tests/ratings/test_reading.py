"""Reading battle files: CSV, Parquet and JSON Lines give the same battles, and a bad row is named by its line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ratings import BattleFileError, read_battles, read_battles_csv
from ratings import csvio
from ratings.csvio import STYLE_COLUMNS, WINNER_OUTCOMES

from tests.data import ROOT as REPO_ROOT


def _rows(path) -> list[tuple[str, str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [(r["model_a"], r["model_b"], r["winner"]) for r in csv.DictReader(fh)]


def _expected(rows: list[tuple[str, str, str]]):
    """The battles as a plain loop reads them: sorted names, indices, outcomes."""
    names = sorted({a for a, _, _ in rows} | {b for _, b, _ in rows})
    index = {n: i for i, n in enumerate(names)}
    return (tuple(names), np.array([index[a] for a, _, _ in rows]), np.array([index[b] for _, b, _ in rows]),
            np.array([WINNER_OUTCOMES[w] for _, _, w in rows]))


def _assert_battles(battles, expected) -> None:
    names, a, b, y = expected
    assert battles.names == names
    np.testing.assert_array_equal(battles.model_a, a)
    np.testing.assert_array_equal(battles.model_b, b)
    np.testing.assert_array_equal(battles.outcome, y)


def test_it_reads_the_same_llmfao_battles_from_csv_parquet_and_json_lines(llmfao_path, tmp_path):
    rows = _rows(llmfao_path)
    expected = _expected(rows)
    columns = {k: [r[i] for r in rows] for i, k in enumerate(("model_a", "model_b", "winner"))}
    pq.write_table(pa.table(columns | {"turn": list(range(len(rows)))}), tmp_path / "battles.parquet")
    with open(tmp_path / "battles.jsonl", "w", encoding="utf-8") as fh:
        for a, b, w in rows:
            # Fields the reader does not need (LMArena's conversations, nested) are skipped.
            fh.write(json.dumps({"model_a": a, "conversation_a": [{"role": "user", "content": "hi"}],
                                 "model_b": b, "winner": w}) + "\n")
    _assert_battles(read_battles(llmfao_path), expected)
    _assert_battles(read_battles(tmp_path / "battles.parquet"), expected)
    _assert_battles(read_battles(tmp_path / "battles.jsonl"), expected)
    (tmp_path / "battles.data").write_bytes((tmp_path / "battles.parquet").read_bytes())
    _assert_battles(read_battles(tmp_path / "battles.data", format="parquet"), expected)


# Files up to csvio._WHOLE_READ_BYTES are read whole on every core, bigger ones streamed batch by batch: both.
READERS = pytest.mark.parametrize("whole_up_to", [1 << 40, 0], ids=["whole", "streamed"])


@READERS
def test_it_gives_the_same_battles_when_the_file_is_read_in_many_small_batches(llmfao_path, monkeypatch, whole_up_to):
    # Each batch has its own dictionary of names; the indices must still agree across batches.
    expected = _expected(_rows(llmfao_path))
    monkeypatch.setattr(csvio, "_BLOCK_BYTES", 4096)
    monkeypatch.setattr(csvio, "_WHOLE_READ_BYTES", whole_up_to)
    _assert_battles(read_battles(llmfao_path), expected)


def test_it_strips_spaces_in_header_and_cells_skips_blank_lines_and_keeps_quoted_line_breaks(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text('model_a, model_b ,winner,prompt\n x ,y,model_a,"two\nlines"\n\n   \ny,x, tie (bothbad) ,p\n')
    battles = read_battles(path)
    assert battles.names == ("x", "y")
    np.testing.assert_array_equal(battles.model_a, [0, 1])
    np.testing.assert_array_equal(battles.outcome, [1.0, 0.5])


BAD_CSV = [
    ("model_a,model_b,winner\nx,y,model_a\n\n\"x\",\"y\",tie\nx,y,draw\n", "line 5: unknown winner 'draw'"),
    ('model_a,model_b,winner,note\nx,y,model_a,"a\nb"\nx,y,draw,c\n', "line 4: unknown winner 'draw'"),
    ("model_a,model_b,winner\nx,y,model_a\nx,y\n", "line 3: expected 3 fields like the header, found 2"),
    ("model_a,model_b,winner\nx,y,model_a\nx,y,tie,extra\n", "line 3: expected 3 fields like the header, found 4"),
    ("model_a,model_b,winner\nx,y,tie\n x , x ,tie\n", "line 3: model 'x' battles itself"),
    ("model_a,model_b,winner\nx,,tie\n", "line 2: empty model name"),
    ("model_a,model_b,result\nx,y,model_a\n", "line 1: missing column(s) winner"),
    ("", "line 1: empty file"),
    ("model_a,model_b,winner\n", "no battles after the header"),
]


@READERS
@pytest.mark.parametrize("text, message", BAD_CSV)
def test_it_names_the_line_of_the_first_bad_csv_row(tmp_path, text, message, monkeypatch, whole_up_to):
    monkeypatch.setattr(csvio, "_WHOLE_READ_BYTES", whole_up_to)
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BattleFileError) as err:
        read_battles(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


@READERS
def test_it_names_the_line_of_a_bad_row_deep_in_a_file_read_in_batches(tmp_path, monkeypatch, whole_up_to):
    monkeypatch.setattr(csvio, "_BLOCK_BYTES", 4096)
    monkeypatch.setattr(csvio, "_WHOLE_READ_BYTES", whole_up_to)
    lines = ["model_a,model_b,winner"] + [f"m{i % 7},m{(i + 1) % 7},tie" for i in range(5000)]
    lines[4321] = "m1,m2,win"
    path = tmp_path / "deep.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BattleFileError, match="line 4322: unknown winner 'win'"):
        read_battles(path)


def test_a_file_that_is_not_utf8_says_which_file_and_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("model_a,model_b,winner\nx,y,tie\ncafé,y,model_a\n".encode("latin-1"))
    with pytest.raises(BattleFileError) as err:
        read_battles(path)
    assert str(err.value).startswith(f"{path}: line 3: not UTF-8")


def test_it_names_the_line_of_a_bad_json_line_and_the_row_of_a_bad_parquet_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"model_a": "x", "model_b": "y", "winner": "tie"}\n\n'
                    '{"model_a": "x", "model_b": "y", "winner": "model_c"}\n')
    with pytest.raises(BattleFileError, match=r"bad.jsonl: line 3: unknown winner 'model_c'"):
        read_battles(path)
    path.write_text('{"model_a": "x", "model_b": "y", "winner": "tie"}\n{"model_a": "x", "winner": "tie"}\n')
    with pytest.raises(BattleFileError, match=r"line 2: missing field\(s\) model_b"):
        read_battles(path)
    path.write_text('{"model_a": "x", "model_b": "y", "winner": "tie"}\n{"model_a": "x", "model_b": "y", "winner": 1}\n')
    with pytest.raises(BattleFileError, match=r"line 2: model_a, model_b and winner must be strings"):
        read_battles(path)
    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"model_a": ["x", "y", "x"], "model_b": ["y", "x", "x"], "winner": ["tie"] * 3}), parquet)
    with pytest.raises(BattleFileError, match=r"bad.parquet: row 3: model 'x' battles itself"):
        read_battles(parquet)
    pq.write_table(pa.table({"model_a": ["x"], "winner": ["tie"]}), parquet)
    with pytest.raises(BattleFileError, match=r"missing column\(s\) model_b"):
        read_battles(parquet)
    (tmp_path / "text.parquet").write_text("model_a,model_b,winner\n")
    with pytest.raises(BattleFileError, match="not a Parquet file"):
        read_battles(tmp_path / "text.parquet")


def test_it_reads_style_columns_and_rejects_bad_counts_by_line(tmp_path):
    path = tmp_path / "styled.csv"
    header = ",".join(("model_a", "model_b", "winner", *STYLE_COLUMNS))
    counts = ",".join(str(k) for k in range(len(STYLE_COLUMNS)))
    path.write_text(f"{header}\nx,y,tie,{counts}\ny,x,model_a,{counts}\n")
    battles = read_battles(path, style=True)
    assert battles.style.shape == (2, 2, 4)
    np.testing.assert_array_equal(battles.style[1].ravel(), range(8))
    path.write_text(f"{header}\nx,y,tie,{counts}\ny,x,model_a,{counts.replace('3', 'lots', 1)}\n")
    with pytest.raises(BattleFileError, match="line 3: style columns must be numbers"):
        read_battles(path, style=True)
    path.write_text(f"{header}\nx,y,tie,{counts}\ny,x,model_a,{counts.replace('3', '-3', 1)}\n")
    with pytest.raises(BattleFileError, match="line 3: style counts must be finite and non-negative"):
        read_battles(path, style=True)


def test_the_command_reads_parquet_from_standard_input_with_format(llmfao_path, tmp_path):
    rows = _rows(llmfao_path)
    parquet = tmp_path / "battles.parquet"
    pq.write_table(pa.table({k: [r[i] for r in rows] for i, k in enumerate(("model_a", "model_b", "winner"))}), parquet)
    from_csv = subprocess.run([sys.executable, "-m", "ratings", str(llmfao_path)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)
    with open(parquet, "rb") as fh:
        from_stdin = subprocess.run([sys.executable, "-m", "ratings", "-", "--format", "parquet"], cwd=REPO_ROOT,
                                    stdin=fh, capture_output=True, text=True, timeout=300)
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_csv.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"model_a,model_b,winner\nx,y,tie\nx,\xff,tie\n")
    with open(bad, "rb") as fh:
        done = subprocess.run([sys.executable, "-m", "ratings", "-"], cwd=REPO_ROOT, stdin=fh,
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "line 3: not UTF-8" in done.stderr and "Traceback" not in done.stderr


def test_read_battles_csv_reads_csv_whatever_the_name(llmfao_path, tmp_path):
    path = tmp_path / "battles.parquet"
    path.write_bytes(llmfao_path.read_bytes())
    _assert_battles(read_battles_csv(path), _expected(_rows(llmfao_path)))
