"""A model that never won (or never lost) is named, and does not drag the other models' scores with it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ratings import aggregate, one_sided_warnings, rate
from ratings.bradley_terry import one_sided

from tests.data import ROOT as REPO_ROOT

from .helpers import simulate

TRUTH = np.array([1000.0, 1100.0, 900.0, 1050.0, 950.0, 1000.0])
NAMES = ["a", "b", "c", "d", "e", "loser"]


def _battles_where_the_last_model_never_wins(seed: int = 4):
    a, b, y = simulate(TRUTH, 4000, seed=seed, tie_rate=0.1)
    last = TRUTH.size - 1
    scored = ((a == last) & (y > 0)) | ((b == last) & (y < 1))
    return a[~scored], b[~scored], y[~scored]


def test_a_never_winning_model_is_named_and_the_others_keep_their_centre():
    a, b, y = _battles_where_the_last_model_never_wins()
    ranking = rate(a, b, y, NAMES)
    assert ranking.never_won() == ["loser"] and ranking.never_lost() == []
    others = ranking.scores[:-1]
    # Before, the ridge held "loser" thousands of points down and the others' mean rose to make up for it.
    assert others.mean() == pytest.approx(1000.0, abs=1e-6)
    assert ranking.scores[-1] < others.min() - 1000
    # Losing every battle says nothing about how the others compare: they score as without its battles.
    rest = (a != 5) & (b != 5)
    alone = rate(a[rest], b[rest], y[rest], NAMES[:-1])
    np.testing.assert_allclose(others, alone.scores, atol=0.5)
    np.testing.assert_allclose(ranking.upper[:-1] - others, alone.upper - alone.scores, atol=0.5)
    boot = rate(a, b, y, NAMES, ci="bootstrap", rounds=60, seed=1)
    assert boot.scores[:-1].mean() == pytest.approx(1000.0, abs=1e-6)
    assert boot.lower[:-1].min() > 800 and boot.upper[:-1].max() < 1250
    (warning,) = one_sided_warnings(ranking)
    assert warning.startswith("loser never won a battle") and "placeholder" in warning


def test_a_never_losing_model_and_one_whose_only_wins_were_over_a_never_winner():
    a, b, y = _battles_where_the_last_model_never_wins()
    # "e" beats "loser" now and then but loses to everyone else: once "loser" is set aside, "e" never won.
    e_scored = (((a == 4) & (b != 5) & (y > 0)) | ((b == 4) & (a != 5) & (y < 1)))
    a, b, y = a[~e_scored], b[~e_scored], y[~e_scored]
    a, b, y = np.append(a, [4, 5]), np.append(b, [5, 4]), np.append(y, [1.0, 0.0])
    # And "b" never loses.
    b_lost = ((a == 1) & (y < 1)) | ((b == 1) & (y > 0))
    a, b, y = a[~b_lost], b[~b_lost], y[~b_lost]
    flags = one_sided(aggregate(a, b, y, 6))
    np.testing.assert_array_equal(flags, [0, 1, 0, 0, -1, -1])
    ranking = rate(a, b, y, NAMES)
    assert ranking.never_won() == ["e", "loser"] and ranking.never_lost() == ["b"]
    assert ranking.scores[[0, 2, 3]].mean() == pytest.approx(1000.0, abs=1e-6)


def test_ties_count_as_half_a_win_so_a_model_that_only_tied_and_lost_is_not_one_sided():
    flags = one_sided(aggregate(np.array([0, 0, 1, 2]), np.array([1, 2, 2, 0]), np.array([0.5, 0.0, 1.0, 1.0]), 3))
    np.testing.assert_array_equal(flags, [0, 0, 0])


def test_the_command_warns_on_standard_error(tmp_path):
    a, b, y = _battles_where_the_last_model_never_wins()
    words = {1.0: "model_a", 0.0: "model_b", 0.5: "tie"}
    path = tmp_path / "b.csv"
    path.write_text("model_a,model_b,winner\n" + "".join(f"{NAMES[i]},{NAMES[j]},{words[k]}\n" for i, j, k in zip(a, b, y)))
    done = subprocess.run([sys.executable, "-m", "ratings", str(path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: loser never won a battle (")
    assert done.stdout.splitlines()[-1].split(",")[1] == "loser"
