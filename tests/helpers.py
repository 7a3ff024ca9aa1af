"""Small helpers shared by the tests: the simulator's column roles, references built like users do."""

from __future__ import annotations

from pathlib import Path

from driftline.cli import main
from driftline.simulate import FILE_DROP, Traffic, generate

ROLES = [
    "--segments",
    "region,gender",
    "--prediction",
    "prediction",
    "--label",
    "label",
    "--latency",
    "latency_ms",
]


def write_reference(path: Path, model: str = "churn", n: int = 20_000) -> Path:
    """Undrifted simulated traffic as a reference file (seed 1000)."""
    generate(Traffic(n=n, seed=1000, model_id=model)).drop(FILE_DROP).write_parquet(path)
    return path


def build_reference(dsn: str, ref: Path, model: str = "churn") -> None:
    """``driftline reference build`` with the simulator's roles."""
    assert main(["reference", "build", "--store", dsn, "--model", model, "--file", str(ref), *ROLES]) == 0
