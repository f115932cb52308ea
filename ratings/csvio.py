"""Reading battles from CSV in the shape of LMArena's public battle data."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from .style import STYLE_FEATURES

WINNER_OUTCOMES: dict[str, float] = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
"""The ``winner`` column's values and the outcome for model A each stands for (arena-rank's default map)."""
STYLE_COLUMNS: tuple[str, ...] = tuple(
    f"style_{side}_{feature}" for side in ("a", "b") for feature in STYLE_FEATURES
)
"""Per-side raw style counts a style-controlled CSV must carry: style_a_tokens, ..., style_b_bold."""


class BattleFileError(ValueError):
    """A malformed battle file; the message names the line."""


@dataclass(frozen=True)
class Battles:
    """Battles read from a file. ``model_a``, ``model_b``: (N,) indices into ``names`` (sorted);
    ``outcome``: (N,) 1 / 0 / 0.5; ``style``: (N, 2, 4) raw counts, or None when not read."""

    names: tuple[str, ...]
    model_a: np.ndarray
    model_b: np.ndarray
    outcome: np.ndarray
    style: np.ndarray | None = None


def read_battles_csv(source: str | Path | TextIO, *, style: bool = False) -> Battles:
    """Read ``model_a,model_b,winner`` rows (other columns ignored; with ``style``, also
    :data:`STYLE_COLUMNS`). Raises :class:`BattleFileError` naming the line of the first bad row."""
    if isinstance(source, (str, Path)):
        with open(source, newline="", encoding="utf-8-sig") as fh:  # tolerate a BOM from spreadsheets
            return _read(fh, style, str(source))
    return _read(source, style, getattr(source, "name", "<stream>"))


def _read(fh: TextIO, style: bool, label: str) -> Battles:
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        raise BattleFileError(f"{label}: line 1: empty file, expected a header model_a,model_b,winner") from None
    header = [h.strip() for h in header]
    needed = ("model_a", "model_b", "winner") + (STYLE_COLUMNS if style else ())
    missing = [c for c in needed if c not in header]
    if missing:
        raise BattleFileError(f"{label}: line 1: missing column(s) {', '.join(missing)}")
    ia, ib, iw = (header.index(c) for c in ("model_a", "model_b", "winner"))
    istyle = [header.index(c) for c in STYLE_COLUMNS] if style else []
    width = max([ia, ib, iw] + istyle) + 1
    rows_a: list[str] = []
    rows_b: list[str] = []
    outcomes: list[float] = []
    styles: list[list[float]] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < width:
            raise BattleFileError(f"{label}: line {line}: expected at least {width} fields, found {len(row)}")
        a, b, w = row[ia].strip(), row[ib].strip(), row[iw].strip()
        if not a or not b:
            raise BattleFileError(f"{label}: line {line}: empty model name")
        if a == b:
            raise BattleFileError(f"{label}: line {line}: model {a!r} battles itself")
        if w not in WINNER_OUTCOMES:
            raise BattleFileError(
                f"{label}: line {line}: unknown winner {w!r} (expected model_a, model_b, tie or tie (bothbad))"
            )
        if style:
            try:
                values = [float(row[k]) for k in istyle]
            except ValueError:
                raise BattleFileError(f"{label}: line {line}: style columns must be numbers") from None
            if any(not np.isfinite(v) or v < 0 for v in values):
                raise BattleFileError(f"{label}: line {line}: style counts must be finite and non-negative")
            styles.append(values)
        rows_a.append(a)
        rows_b.append(b)
        outcomes.append(WINNER_OUTCOMES[w])
    if not outcomes:
        raise BattleFileError(f"{label}: no battles after the header")
    names = tuple(sorted(set(rows_a) | set(rows_b)))
    index = {n: i for i, n in enumerate(names)}
    return Battles(
        names=names,
        model_a=np.array([index[n] for n in rows_a], dtype=np.int64),
        model_b=np.array([index[n] for n in rows_b], dtype=np.int64),
        outcome=np.array(outcomes),
        style=np.array(styles).reshape(-1, 2, len(STYLE_FEATURES)) if style else None,
    )
