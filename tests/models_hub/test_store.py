from __future__ import annotations

from pathlib import Path

import pytest

from models_hub.builders import MARKER_NAME, checkpoint_build, checkpoint_is_current, marker_read


def writer(calls: list[str], content: str):
    def build(out: Path) -> dict:
        calls.append(content)
        (out / "weights.bin").write_text(content)
        return {"note": content}

    return build


def test_it_builds_once_and_reuses_a_build_of_the_same_source(tmp_path: Path) -> None:
    calls: list[str] = []
    target = tmp_path / "model"

    first = checkpoint_build(target, {"sha256": "aa"}, writer(calls, "v1"), log=lambda _: None)
    second = checkpoint_build(target, {"sha256": "aa"}, writer(calls, "v2"), log=lambda _: None)

    assert (first.built, second.built) == (True, False)
    assert calls == ["v1"]
    assert (target / "weights.bin").read_text() == "v1"
    assert marker_read(target)["note"] == "v1"


def test_it_rebuilds_when_the_source_changes(tmp_path: Path) -> None:
    target = tmp_path / "model"
    checkpoint_build(target, {"sha256": "aa"}, writer([], "v1"), log=lambda _: None)

    result = checkpoint_build(target, {"sha256": "bb"}, writer([], "v2"), log=lambda _: None)

    assert result.built
    assert (target / "weights.bin").read_text() == "v2"
    assert checkpoint_is_current(target, {"sha256": "bb"})
    assert not checkpoint_is_current(target, {"sha256": "aa"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]


def test_it_rebuilds_when_forced(tmp_path: Path) -> None:
    calls: list[str] = []
    target = tmp_path / "model"
    checkpoint_build(target, {"sha256": "aa"}, writer(calls, "v1"), log=lambda _: None)

    checkpoint_build(target, {"sha256": "aa"}, writer(calls, "v2"), force=True, log=lambda _: None)

    assert calls == ["v1", "v2"]


def test_it_never_leaves_a_finished_looking_build_when_building_fails(tmp_path: Path) -> None:
    target = tmp_path / "model"

    def interrupted(out: Path) -> None:
        (out / "weights.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint_build(target, {"sha256": "aa"}, interrupted, log=lambda _: None)

    assert not target.exists()
    assert marker_read(target) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock"]


def test_it_keeps_the_old_build_when_a_rebuild_fails(tmp_path: Path) -> None:
    target = tmp_path / "model"
    checkpoint_build(target, {"sha256": "aa"}, writer([], "v1"), log=lambda _: None)

    def broken(out: Path) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint_build(target, {"sha256": "bb"}, broken, log=lambda _: None)

    assert (target / "weights.bin").read_text() == "v1"
    assert checkpoint_is_current(target, {"sha256": "aa"})


def test_it_does_not_count_a_directory_without_a_marker_as_built(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / MARKER_NAME).write_text("{not json")

    assert marker_read(target) is None
    assert checkpoint_build(target, {"sha256": "aa"}, writer([], "v1"), log=lambda _: None).built
