"""Checkpoints built once under the models directory, keyed by their source, and reused.

A build writes into a temporary directory beside its target, writes the marker file last, and then renames the
directory into place: a directory with a marker is complete, and an interrupted build never looks finished. The
marker records the source's identity; when the source changes (a new package version, a different file, a new
recipe) the checkpoint is built again.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER_NAME = "arena-build.json"

Log = Callable[[str], None]


class BuildError(Exception):
    """A checkpoint could not be built: the message says why, for an operator."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    built: bool  # False when a complete build of the same source was reused
    marker: dict[str, Any]


def marker_read(path: Path) -> dict[str, Any] | None:
    """The marker of a complete build at `path`, or None when there is no complete build there."""
    try:
        marker = json.loads((Path(path) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "source" in marker else None


def checkpoint_is_current(path: Path, source: dict[str, Any]) -> bool:
    marker = marker_read(path)
    return marker is not None and marker["source"] == source


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    # Two processes starting at once (a web server and a worker) must not build the same checkpoint twice.
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(target: Path) -> None:
    for pattern in (f".{target.name}.building-*", f".{target.name}.old-*"):
        for leftover in target.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _make_readable(directory: Path) -> None:
    # mkdtemp makes the directory private, and some writers make private files; worker processes may run as
    # another user than the one who built the checkpoint.
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def checkpoint_build(
    target: Path,
    source: dict[str, Any],
    build: Callable[[Path], dict[str, Any] | None],
    *,
    force: bool = False,
    log: Log = print,
) -> BuildResult:
    """Build the checkpoint at `target` with `build(tmp_dir)` unless a complete build of `source` is there.

    `source` must be JSON-serialisable and identify everything the result depends on. `build` writes the
    checkpoint files into the directory it is given and may return extra facts for the marker.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target):
        marker = marker_read(target)
        if not force and marker is not None and marker["source"] == source:
            log(f"{target.name}: up to date, reusing {target}")
            return BuildResult(target, False, marker)
        _remove_leftovers(target)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
        try:
            extra = build(work) or {}
            _make_readable(work)
            marker = {
                **extra,
                "source": source,
                "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            (work / MARKER_NAME).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                target.rename(old / "checkpoint")
                work.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    log(f"{target.name}: built at {target}")
    return BuildResult(target, True, marker)
