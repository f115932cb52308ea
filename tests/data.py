"""Where the shared real data lives: `shared/` beside the checkout (or inside it), as CI lays it out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shared_data(*parts: str) -> Path:
    """The path of a file under shared/data/; the test fails, naming where it looked, when it is missing."""
    roots = [Path(os.environ["ARENA_SHARED_DATA"])] if os.environ.get("ARENA_SHARED_DATA") else []
    roots += [ROOT.parent / "shared" / "data", ROOT / "shared" / "data"]
    for root in roots:
        path = root.joinpath(*parts)
        if path.exists():
            return path
    pytest.fail(f"shared data {'/'.join(parts)} not found under any of: {', '.join(map(str, roots))}")
