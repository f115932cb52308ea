"""Real public data the tests read, kept in the repository under tests/fixtures/ with its attribution."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def fixture_data(*parts: str) -> Path:
    """The path of a file under tests/fixtures/ (see the README beside each data set for its source and licence)."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"test data {path} is missing from the repository")
    return path
