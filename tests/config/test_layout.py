"""The layout's invariants (docs/architecture.md): imports flow one way, battles -> inference -> registry, and the
ratings library imports no Django. Every import statement counts, lazy ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = {"models_hub", "inference", "arena", "leaderboard", "speech", "trust", "training", "ratings"}


def imported_top_packages(package: str, root: Path = ROOT) -> dict[str, list[str]]:
    """Top-level package -> the 'file:line' places where `package`'s code imports it (relative imports skipped)."""
    found: dict[str, list[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(f"{path.relative_to(root)}:{node.lineno}")
    return found


@pytest.mark.parametrize("package, allowed", [
    ("models_hub", set()),  # the registry knows no other part of the arena
    ("inference", {"models_hub"}),  # inference reads the registry, never battles or ratings
    ("ratings", set()),  # the ratings library: no app, and (below) no Django
])
def test_imports_flow_one_way(package, allowed):
    found = imported_top_packages(package)
    wrong = {name: places for name, places in found.items() if name in APPS - {package} - allowed}
    assert wrong == {}, f"{package} imports {sorted(wrong)}: {wrong}"


def test_the_ratings_library_imports_no_django():
    found = imported_top_packages("ratings")
    assert "django" not in found, found.get("django")
    assert "numpy" in found  # the walk does see the library's imports


def test_the_walk_sees_lazy_imports(tmp_path):
    # The check above is only as good as its walk: an import inside a function must be found.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    from arena.models import Battle\n    import inference.cache\n")
    (package / "b.py").write_text("from . import a\n")
    assert set(imported_top_packages("pkg", root=tmp_path)) == {"arena", "inference"}
