"""Imports go one way: detectors import nothing of the project but contract; nothing imports cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "driftline"
ALLOWED_THIRD_PARTY_IN_DETECTORS = {"numpy", "numba", "scipy"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("detectors"), ids=lambda p: p.name)
def test_detectors_import_only_contract_and_math(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "driftline":
            assert name.startswith(("driftline.detectors", "driftline.contract")), (
                f"{path.name} imports {name}"
            )
        else:
            stdlib = top in __import__("sys").stdlib_module_names
            assert stdlib or top in ALLOWED_THIRD_PARTY_IN_DETECTORS, f"{path.name} imports {name}"


def test_nothing_imports_cli() -> None:
    for path in PKG.rglob("*.py"):
        if path.name == "cli.py":
            continue
        assert not any(n.startswith("driftline.cli") for n in _imports(path)), path


def test_top_level_directories_point_at_the_packages() -> None:
    root = PKG.parents[1]
    for name in ("ingest", "detectors", "api", "alerting"):
        assert (root / name).resolve() == (PKG / name).resolve(), name
    for name in ("dashboards", "bench", "tests"):
        assert (root / name).is_dir(), name
