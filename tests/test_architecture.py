"""Imports go one way: detectors import nothing of the project but contract; nothing imports cli."""

from __future__ import annotations

import ast
import re
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
        if path.is_relative_to(PKG / "cli"):
            continue
        assert not any(n.startswith("driftline.cli") for n in _imports(path)), path


def test_top_level_directories_point_at_the_packages() -> None:
    root = PKG.parents[1]
    for name in ("ingest", "detectors", "api", "alerting"):
        assert (root / name).resolve() == (PKG / name).resolve(), name
    for name in ("dashboards", "bench", "tests"):
        assert (root / name).is_dir(), name


WIRED = {"Store", "StreamConsumer", "WindowEvaluator", "PushIngest", "AlertRunner", "Service"}


def _constructions(path: Path) -> set[str]:
    """Names of the wired classes this module calls (``Store.open`` counts as constructing a Store)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in WIRED:
            found.add(f.id)
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in WIRED:
            found.add(f.value.id)
    return found


def test_only_the_service_wires_the_product() -> None:
    """store, consumers, evaluators, pushed ingest and alerting are built in service.py alone
    (the demo builds the Service; each class may build itself, e.g. ``cls(...)`` in ``open``)."""
    built = {p.relative_to(PKG).as_posix(): _constructions(p) for p in PKG.rglob("*.py")}
    allowed = {
        "service.py": WIRED,
        "cli/_args.py": {"Service"},  # the commands' one way to the wiring
        "demo.py": {"Service"},
        "ingest/consumer.py": {"WindowEvaluator"},  # its own, when not given the process's shared one
    }
    wrong = {p: names - allowed.get(p, set()) for p, names in built.items() if names - allowed.get(p, set())}
    assert not wrong, wrong


def test_sql_plumbing_stays_in_storage() -> None:
    """Nothing outside storage/ calls a store's private methods (its connection's plumbing)."""
    for path in PKG.rglob("*.py"):
        if path.is_relative_to(PKG / "storage"):
            continue
        private = re.findall(r"\bstore\._\w+", path.read_text())
        assert not private, f"{path.relative_to(PKG)} calls {private}"
