from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ratings import read_battles_csv
from tests.data import fixture_data



@dataclass(frozen=True)
class Reference:
    """arena-rank 0.1.1's sandwich ranking of LLMFAO, in the file's order (best first)."""

    names: list[str]
    score: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    votes: np.ndarray


@pytest.fixture(scope="session")
def llmfao_path() -> Path:
    return fixture_data("llmfao", "battles.csv")


@pytest.fixture(scope="session")
def llmfao(llmfao_path):
    return read_battles_csv(llmfao_path)


@pytest.fixture(scope="session")
def reference(llmfao_path) -> Reference:
    with open(fixture_data("llmfao", "arena_rank_sandwich.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    col = lambda k: np.array([float(r[k]) for r in rows])  # noqa: E731
    return Reference([r["model"] for r in rows], col("score"), col("lower"), col("upper"), col("votes"))
