"""Small helpers shared by the tests: the simulator's column roles, references built like users do,
the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import driftline
from driftline import simulate
from driftline.cli import main
from driftline.ingest.compare import compare_tables
from driftline.simulate import FILE_DROP, Traffic, generate

SEGMENTS = ",".join(simulate.SEGMENTS)  # region,gender
ROLES = ["--segments", SEGMENTS, "--prediction", "prediction", "--label", "label", "--latency", "latency_ms"]


def write_reference(path: Path, model: str = "churn", n: int = 20_000) -> Path:
    """Undrifted simulated traffic as a reference file (seed 1000)."""
    generate(Traffic(n=n, seed=1000, model_id=model)).drop(FILE_DROP).write_parquet(path)
    return path


def build_reference(dsn: str, ref: Path, model: str = "churn") -> None:
    """``driftline reference build`` with the simulator's roles."""
    assert main(["reference", "build", "--store", dsn, "--model", model, "--file", str(ref), *ROLES]) == 0


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout's driftline first, whatever is installed."""
    src = str(Path(driftline.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``driftline ARGS`` as a user runs it, stdout and stderr captured (so piped, not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def compare_files(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`compare_tables`'s report alone, as ``driftline compare --json`` prints it."""
    return compare_tables(*args, **kwargs).report
