"""Reading battles from files in the shapes arena data ships in: CSV, Parquet and JSON Lines.

Every format carries the columns (or fields) ``model_a``, ``model_b`` and ``winner`` (other columns are
ignored; with ``style``, also :data:`STYLE_COLUMNS`), LMArena's public battle data's shape.

The files are read by pyarrow's columnar readers in batches of a few hundred thousand rows, with the three
text columns dictionary-encoded as they are parsed: a batch costs an int32 per cell, and the few distinct
model names and winners are stripped, checked and mapped to indices once per batch rather than once per row.
So a 60M-row file is read at the speed of the reader, into three compact (N,) arrays. A CSV file up to
``_WHOLE_READ_BYTES`` is parsed whole, its blocks on every core; a bigger one is streamed, batch by batch.

Errors name the file and the line (Parquet: the row). The fast readers find that something is wrong; to
name the line of the first bad row exactly (blank lines, quoted line breaks and all), the file is then read
once more, row by row, by the plain Python reader, which gives the message. Only a bad file pays that pass.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .style import STYLE_FEATURES

WINNER_OUTCOMES: dict[str, float] = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
"""The ``winner`` column's values and the outcome for model A each stands for (arena-rank's default map)."""
STYLE_COLUMNS: tuple[str, ...] = tuple(
    f"style_{side}_{feature}" for side in ("a", "b") for feature in STYLE_FEATURES
)
"""Per-side raw style counts a style-controlled file must carry: style_a_tokens, ..., style_b_bold."""
FORMATS = ("csv", "parquet", "jsonl")
"""File formats :func:`read_battles` reads; by default chosen from the file name (see :func:`file_format`)."""
BATTLE_COLUMNS = ("model_a", "model_b", "winner")

_WHOLE_READ_BYTES = 256 << 20  # CSV files up to this size are read whole, with every core (see _read_csv)
_BLOCK_BYTES = 16 << 20  # CSV / JSONL bytes per batch: ~400k LMArena rows, a few MB of int32 per column
_PARQUET_BATCH_ROWS = 1 << 20
_WINNER_LIST = "model_a, model_b, tie or tie (bothbad)"
_TEXT = pa.dictionary(pa.int32(), pa.string())


class BattleFileError(ValueError):
    """A malformed battle file; the message names the file and the line (or row) of the first bad row."""


@dataclass(frozen=True)
class Battles:
    """Battles read from a file. ``model_a``, ``model_b``: (N,) int32 indices into ``names`` (sorted);
    ``outcome``: (N,) float32 1 / 0 / 0.5; ``style``: (N, 2, 4) raw counts, or None when not read."""

    names: tuple[str, ...]
    model_a: np.ndarray
    model_b: np.ndarray
    outcome: np.ndarray
    style: np.ndarray | None = None


def file_format(name: str) -> str:
    """The format a file name implies: ``.parquet`` / ``.pq`` Parquet, ``.jsonl`` / ``.ndjson`` / ``.json``
    JSON Lines, anything else CSV."""
    suffix = Path(name).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def read_battles(
    source: str | Path | BinaryIO | TextIO, *, style: bool = False, format: str | None = None
) -> Battles:
    """Read battles from a path or an open file (standard input included) in one of :data:`FORMATS`.

    ``format`` None picks it from the file name (CSV for a stream without one). Raises
    :class:`BattleFileError` naming the file and the line (Parquet: the row) of the first bad row.
    """
    if isinstance(source, (str, Path)):
        label = str(source)
        fmt = format or file_format(label)
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        src: str | io.BytesIO = label
        if fmt == "parquet":
            return _read_parquet(label, label, style)
    else:
        label = str(getattr(source, "name", "<stream>"))
        fmt = format or (file_format(label) if not label.startswith("<") else "csv")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        # A stream is read whole first: the error pass needs to read it a second time.
        raw = getattr(source, "buffer", source).read()
        src = io.BytesIO(raw.encode("utf-8") if isinstance(raw, str) else raw)
        if fmt == "parquet":
            return _read_parquet(src, label, style)
    try:
        return (_read_csv if fmt == "csv" else _read_jsonl)(src, label, style)
    except _BadRow as bad:
        first = bad.first_error(src, label, style)
        raise first from None


def read_battles_csv(source: str | Path | BinaryIO | TextIO, *, style: bool = False) -> Battles:
    """:func:`read_battles` of a CSV file, whatever its name."""
    return read_battles(source, style=style, format="csv")


# ---------------------------------------------------------------------------------------------------------------
# From batches of dictionary-encoded columns to (N,) index arrays


class _BadRow(Exception):
    """The fast reader found a bad row; ``first_error`` says which, with its line, from a row-by-row pass."""

    def __init__(self, message: str, record: int | None, scan):
        super().__init__(message)
        self.message = message
        self.record = record  # 0-based data row, where known
        self._scan = scan

    def first_error(self, src: str | io.BytesIO, label: str, style: bool) -> BattleFileError:
        if isinstance(src, io.BytesIO):
            src.seek(0)
        try:
            self._scan(src, label, style)
        except BattleFileError as exc:
            return exc
        where = f"data row {self.record + 1}: " if self.record is not None else ""
        return BattleFileError(f"{label}: {where}{self.message}")


class _Collector:
    """Turns batches into global model indices, outcomes and style counts, checking every row."""

    def __init__(self, style: bool, scan, row_word: str = "data row"):
        self.style = style
        self.scan = scan
        self.row_word = row_word
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self.rows = 0
        self.parts_a: list[np.ndarray] = []
        self.parts_b: list[np.ndarray] = []
        self.parts_y: list[np.ndarray] = []
        self.parts_style: list[np.ndarray] = []

    def fail(self, message: str, row_in_batch: int | None) -> _BadRow:
        record = None if row_in_batch is None else self.rows + int(row_in_batch)
        return _BadRow(message, record, self.scan)

    def _encoded(self, column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
        """(rows,) int32 codes and the stripped dictionary of a text column; nulls are a bad row."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        if column.null_count:
            raise self.fail("missing value", int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]))
        return column.indices.to_numpy().astype(np.int32, copy=False), [s.strip() for s in column.dictionary.to_pylist()]

    def _models(self, codes: np.ndarray, values: list[str]) -> np.ndarray:
        lookup = np.empty(len(values), dtype=np.int32)
        for k, name in enumerate(values):
            if not name:
                row = int(np.flatnonzero(codes == k)[0]) if (codes == k).any() else None
                raise self.fail("empty model name", row)
            i = self.index.get(name)
            if i is None:
                i = self.index[name] = len(self.names)
                self.names.append(name)
            lookup[k] = i
        return _gather(lookup, codes)

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        n = batch.num_rows
        if n == 0:
            return
        codes_a, names_a = self._encoded(batch.column("model_a"))
        codes_b, names_b = self._encoded(batch.column("model_b"))
        codes_w, winners = self._encoded(batch.column("winner"))
        a = self._models(codes_a, names_a)
        b = self._models(codes_b, names_b)
        same = np.flatnonzero(a == b)
        if same.size:
            raise self.fail(f"model {self.names[a[same[0]]]!r} battles itself", int(same[0]))
        lookup = np.empty(len(winners), dtype=np.float32)
        for k, w in enumerate(winners):
            if w not in WINNER_OUTCOMES:
                hit = np.flatnonzero(codes_w == k)
                raise self.fail(f"unknown winner {w!r} (expected {_WINNER_LIST})", int(hit[0]) if hit.size else None)
            lookup[k] = WINNER_OUTCOMES[w]
        self.parts_a.append(a)
        self.parts_b.append(b)
        self.parts_y.append(_gather(lookup, codes_w))
        if self.style:
            cols = []
            for c in STYLE_COLUMNS:
                col = batch.column(c)
                if isinstance(col, pa.ChunkedArray):
                    col = col.combine_chunks()
                if col.null_count:
                    row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                    raise self.fail("style columns must be numbers", row)
                cols.append(col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))
            values = np.column_stack(cols)
            bad = ~(np.isfinite(values) & (values >= 0)).all(axis=1)
            if bad.any():
                raise self.fail("style counts must be finite and non-negative", int(np.flatnonzero(bad)[0]))
            self.parts_style.append(values)
        self.rows += n

    def battles(self, label: str) -> Battles:
        if not self.rows:
            raise BattleFileError(f"{label}: no battles after the header")
        # Indices were handed out in order of appearance; the names are returned sorted, as arena-rank does.
        order = sorted(range(len(self.names)), key=self.names.__getitem__)
        remap = np.empty(len(order), dtype=np.int32)
        remap[order] = np.arange(len(order), dtype=np.int32)
        a = _gather(remap, np.concatenate(self.parts_a))
        self.parts_a.clear()
        b = _gather(remap, np.concatenate(self.parts_b))
        self.parts_b.clear()
        y = np.concatenate(self.parts_y)
        self.parts_y.clear()
        st = (np.concatenate(self.parts_style).reshape(-1, 2, len(STYLE_FEATURES)) if self.style else None)
        return Battles(names=tuple(self.names[i] for i in order), model_a=a, model_b=b, outcome=y, style=st)


def _gather(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[codes]`` for millions of small integer codes: numpy gathers with native-width indices several
    times faster than with int32 ones, even counting the conversion."""
    return table.take(codes.astype(np.intp, copy=False))


def _collect(reader: pa.RecordBatchReader, collector: _Collector) -> None:
    """Feed every batch to ``collector``; the reader is closed whatever happens, since a streaming reader
    left open on an error keeps its read-ahead thread, and the interpreter then aborts on exit."""
    try:
        for batch in reader:
            collector.add(batch)
    finally:
        reader.close()


def _needed(style: bool) -> tuple[str, ...]:
    return BATTLE_COLUMNS + (STYLE_COLUMNS if style else ())


def _missing(found: list[str], style: bool) -> list[str]:
    return [c for c in _needed(style) if c not in found]


# ---------------------------------------------------------------------------------------------------------------
# CSV


def _decoded_lines(fh: BinaryIO, label: str) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 is an error naming it (a leading BOM is dropped)."""
    for number, raw in enumerate(fh, 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BattleFileError(
                f"{label}: line {number}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
            ) from None


def _native(src: str | io.BytesIO) -> str | pa.BufferReader:
    """What pyarrow reads: a path, or the bytes of a stream in Arrow's own buffer. Never a Python file
    object: pyarrow's read-ahead threads would need the interpreter, and abort it at exit after an error."""
    return src if isinstance(src, str) else pa.BufferReader(src.getvalue())


def _open_binary(src: str | io.BytesIO) -> BinaryIO:
    if isinstance(src, io.BytesIO):
        src.seek(0)
        return src
    return open(src, "rb")


def _csv_header(src: str | io.BytesIO, label: str, style: bool) -> list[str]:
    """The header row, checked: the file is not empty and has the needed columns."""
    fh = _open_binary(src)
    try:
        reader = csv.reader(_decoded_lines(fh, label))
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise BattleFileError(f"{label}: line 1: empty file, expected a header model_a,model_b,winner") from None
    finally:
        if not isinstance(src, io.BytesIO):
            fh.close()
    missing = _missing(header, style)
    if missing:
        raise BattleFileError(f"{label}: line 1: missing column(s) {', '.join(missing)}")
    return header


def _scan_csv(src: str | io.BytesIO, label: str, style: bool) -> None:
    """Check every row in Python, raising :class:`BattleFileError` at the first bad one with its line."""
    fh = _open_binary(src)
    try:
        reader = csv.reader(_decoded_lines(fh, label))
        header = [h.strip() for h in next(reader)]
        ia, ib, iw = (header.index(c) for c in BATTLE_COLUMNS)
        istyle = [header.index(c) for c in STYLE_COLUMNS] if style else []
        for row in reader:
            line = reader.line_num
            if len(row) <= 1 and not "".join(row).strip():
                continue  # a blank line
            if len(row) != len(header):
                raise BattleFileError(f"{label}: line {line}: expected {len(header)} fields like the header, found {len(row)}")
            a, b, w = row[ia].strip(), row[ib].strip(), row[iw].strip()
            if not a or not b:
                raise BattleFileError(f"{label}: line {line}: empty model name")
            if a == b:
                raise BattleFileError(f"{label}: line {line}: model {a!r} battles itself")
            if w not in WINNER_OUTCOMES:
                raise BattleFileError(f"{label}: line {line}: unknown winner {w!r} (expected {_WINNER_LIST})")
            if style:
                _check_style([row[k] for k in istyle], f"{label}: line {line}")
    finally:
        if not isinstance(src, io.BytesIO):
            fh.close()


def _check_style(values: list, where: str) -> None:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise BattleFileError(f"{where}: style columns must be numbers") from None
    if any(not math.isfinite(v) or v < 0 for v in numbers):
        raise BattleFileError(f"{where}: style counts must be finite and non-negative")


def _blank_row(row: pa_csv.InvalidRow) -> str:
    # A line of spaces is a blank line (the reader skips truly empty ones itself); any other row whose
    # number of fields differs from the header's is an error the row-by-row pass will name.
    return "skip" if not row.text.strip() else "error"


def _read_csv(src: str | io.BytesIO, label: str, style: bool) -> Battles:
    header = _csv_header(src, label, style)
    needed = list(_needed(style))
    types = {c: (_TEXT if c in BATTLE_COLUMNS else pa.float64()) for c in needed}
    collector = _Collector(style, _scan_csv)
    size = os.path.getsize(src) if isinstance(src, str) else src.getbuffer().nbytes
    # Up to _WHOLE_READ_BYTES the whole file at once: the threaded reader parses its blocks on every core (the
    # streaming one parses them one after another, 0.6 s more of a 2.5 s run at 10M battles). Above it, the
    # streaming reader, batch by batch: at 60M battles it needs a third less memory for the same time.
    read = pa_csv.read_csv if size <= _WHOLE_READ_BYTES else pa_csv.open_csv
    try:
        table = read(
            _native(src),
            # The header as read above, spaces stripped (" winner" is the winner column, as it always was).
            read_options=pa_csv.ReadOptions(block_size=_BLOCK_BYTES, column_names=header, skip_rows=1),
            # Quoted fields may hold line breaks (answer texts do); model names and winners never do.
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=_blank_row),
            convert_options=pa_csv.ConvertOptions(include_columns=needed, column_types=types, strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise _BadRow(str(exc).splitlines()[0], None, _scan_csv) from None
    try:
        for batch in table.to_batches() if isinstance(table, pa.Table) else table:
            collector.add(batch)
    except pa.ArrowInvalid as exc:  # the streaming reader parses as it goes
        raise _BadRow(str(exc).splitlines()[0], None, _scan_csv) from None
    finally:
        if not isinstance(table, pa.Table):
            table.close()  # a streaming reader left open on an error keeps its read-ahead thread
    del table
    return collector.battles(label)


# ---------------------------------------------------------------------------------------------------------------
# JSON Lines


def _scan_jsonl(src: str | io.BytesIO, label: str, style: bool) -> None:
    fh = _open_binary(src)
    try:
        for number, line in enumerate(_decoded_lines(fh, label), 1):
            if not line.strip():
                continue
            where = f"{label}: line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BattleFileError(f"{where}: not a JSON object ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise BattleFileError(f"{where}: not a JSON object")
            missing = _missing(list(obj), style)
            if missing:
                raise BattleFileError(f"{where}: missing field(s) {', '.join(missing)}")
            a, b, w = (obj[c] for c in BATTLE_COLUMNS)
            if not all(isinstance(v, str) for v in (a, b, w)):
                raise BattleFileError(f"{where}: model_a, model_b and winner must be strings")
            a, b, w = a.strip(), b.strip(), w.strip()
            if not a or not b:
                raise BattleFileError(f"{where}: empty model name")
            if a == b:
                raise BattleFileError(f"{where}: model {a!r} battles itself")
            if w not in WINNER_OUTCOMES:
                raise BattleFileError(f"{where}: unknown winner {w!r} (expected {_WINNER_LIST})")
            if style:
                values = [obj[c] for c in STYLE_COLUMNS]
                if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
                    raise BattleFileError(f"{where}: style columns must be numbers")
                _check_style(values, where)
    finally:
        if not isinstance(src, io.BytesIO):
            fh.close()


def _read_jsonl(src: str | io.BytesIO, label: str, style: bool) -> Battles:
    needed = _needed(style)
    schema = pa.schema([(c, pa.string() if c in BATTLE_COLUMNS else pa.float64()) for c in needed])
    collector = _Collector(style, _scan_jsonl)
    try:
        reader = pa_json.open_json(
            _native(src),
            read_options=pa_json.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore",
                                               newlines_in_values=False),
        )
        _collect(reader, collector)
    except pa.ArrowInvalid as exc:
        raise _BadRow(str(exc).splitlines()[0], None, _scan_jsonl) from None
    if not collector.rows:
        raise BattleFileError(f"{label}: no battles in the file")
    return collector.battles(label)


# ---------------------------------------------------------------------------------------------------------------
# Parquet


def _no_scan(src, label: str, style: bool) -> None:
    """Parquet rows have no lines; the fast reader's row number is the answer."""


def _read_parquet(src: str | io.BytesIO, label: str, style: bool) -> Battles:
    try:
        schema = pq.read_schema(_native(src))
    except (pa.ArrowInvalid, OSError) as exc:
        raise BattleFileError(f"{label}: not a Parquet file ({str(exc).splitlines()[0]})") from None
    missing = _missing(schema.names, style)
    if missing:
        raise BattleFileError(f"{label}: missing column(s) {', '.join(missing)}")
    pf = pq.ParquetFile(_native(src), read_dictionary=list(BATTLE_COLUMNS))
    for c in BATTLE_COLUMNS:
        t = pf.schema_arrow.field(c).type
        value_type = t.value_type if pa.types.is_dictionary(t) else t
        if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
            raise BattleFileError(f"{label}: column {c} must hold text, not {value_type}")
    collector = _Collector(style, _no_scan)
    try:
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=list(_needed(style))):
            if style:
                batch = pa.RecordBatch.from_arrays(
                    [batch.column(c) if c in BATTLE_COLUMNS else pc.cast(batch.column(c), pa.float64())
                     for c in batch.schema.names], names=batch.schema.names)
            collector.add(batch)
    except _BadRow as bad:
        raise BattleFileError(f"{label}: row {bad.record + 1}: {bad.message}" if bad.record is not None
                              else f"{label}: {bad.message}") from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise BattleFileError(f"{label}: {str(exc).splitlines()[0]}") from None
    if not collector.rows:
        raise BattleFileError(f"{label}: no battles in the file")
    return collector.battles(label)

