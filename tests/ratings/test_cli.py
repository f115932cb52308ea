from __future__ import annotations

import csv
import io
import subprocess
import sys

import numpy as np
import pytest

from ratings import ranking_to_csv, rate
from ratings.csvio import STYLE_COLUMNS

from tests.data import ROOT as REPO_ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ratings", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_it_prints_arena_rank_numbers_for_llmfao_by_default(llmfao_path, reference):
    done = _run(str(llmfao_path))
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert list(rows[0]) == ["rank", "model", "score", "lower", "upper", "votes"]
    assert [r["model"] for r in rows] == reference.names
    col = lambda k: np.array([float(r[k]) for r in rows])  # noqa: E731
    assert np.abs(col("score") - reference.score).max() < 0.5
    assert np.abs(col("lower") - reference.lower).max() < 1.0
    assert np.abs(col("upper") - reference.upper).max() < 1.0
    np.testing.assert_array_equal(col("votes"), reference.votes)
    assert col("rank")[0] == 1
    assert (np.diff(col("score")) <= 0).all()


def test_it_applies_anchor_and_bootstrap_options(llmfao_path):
    done = _run(str(llmfao_path), "--ci", "bootstrap", "--rounds", "50", "--seed", "3", "--anchor", "GPT 4=1300")
    assert done.returncode == 0, done.stderr
    gpt4 = next(r for r in _rows(done.stdout) if r["model"] == "GPT 4")
    assert float(gpt4["score"]) == pytest.approx(1300.0)
    assert float(gpt4["lower"]) == pytest.approx(1300.0)


def test_it_names_the_line_of_an_unknown_winner(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model_a,model_b,winner\nx,y,model_a\nx,y,tie (bothbad)\ny,x,draw\n")
    done = _run(str(bad))
    assert done.returncode != 0
    assert "line 4" in done.stderr and "draw" in done.stderr
    assert done.stdout == ""


def test_it_names_a_missing_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model_a,model_b,result\nx,y,model_a\n")
    done = _run(str(bad))
    assert done.returncode != 0
    assert "winner" in done.stderr and "line 1" in done.stderr


def test_it_reports_a_disconnected_file_without_a_traceback(tmp_path):
    bad = tmp_path / "split.csv"
    bad.write_text("model_a,model_b,winner\na,b,model_a\nc,d,model_b\n")
    done = _run(str(bad))
    assert done.returncode != 0
    assert "disconnected" in done.stderr and "Traceback" not in done.stderr


def test_it_adds_style_controlled_columns_when_asked(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "styled.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model_a", "model_b", "winner", *STYLE_COLUMNS])
        for _ in range(300):
            a, b = rng.choice(["p", "q", "r"], 2, replace=False)
            w.writerow([a, b, rng.choice(["model_a", "model_b", "tie"]), *rng.integers(0, 50, len(STYLE_COLUMNS))])
    done = _run(str(path), "--style")
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert list(rows[0])[6:] == ["style_rank", "style_score", "style_lower", "style_upper"]
    assert "style coefficient tokens" in done.stderr
    plain = tmp_path / "plain.csv"
    plain.write_text("model_a,model_b,winner\na,b,model_a\nb,a,model_a\n")
    done = _run(str(plain), "--style")
    assert done.returncode != 0 and "style_a_tokens" in done.stderr


def test_it_writes_the_csv_best_first_with_whole_votes():
    ranking = rate(np.array([0, 0, 0, 1]), np.array([1, 2, 2, 2]), np.array([1.0, 1.0, 0.5, 1.0]), ["c", "a", "b"])
    rows = _rows(ranking_to_csv(ranking))
    assert [r["model"] for r in rows] == ["c", "a", "b"]
    assert [r["votes"] for r in rows] == ["3", "2", "3"]
    out = io.StringIO()
    assert ranking_to_csv(ranking, out) == out.getvalue()


def test_it_reads_a_csv_that_starts_with_a_byte_order_mark(tmp_path):
    from ratings import read_battles_csv

    path = tmp_path / "bom.csv"
    path.write_bytes("model_a,model_b,winner\nx,y,model_a\ny,x,tie (bothbad)\n".encode("utf-8-sig"))
    battles = read_battles_csv(path)
    assert battles.names == ("x", "y")
    np.testing.assert_array_equal(battles.outcome, [1.0, 0.5])
    np.testing.assert_array_equal(battles.model_a, [0, 1])
