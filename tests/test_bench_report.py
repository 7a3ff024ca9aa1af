"""The benchmark figures in README.md and bench/README.md are generated from bench/results/*.json:
a hand edit or a table older than its JSON fails here (fix: ``python -m bench.report``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from bench._harness import stamp, write_result

ROOT = Path(__file__).resolve().parents[1]


def check(root: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bench.report", "--check", "--root", str(root)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_readme_benchmark_blocks_match_the_results() -> None:
    proc = check(ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_a_hand_edited_figure_is_caught(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "bench" / "results", tmp_path / "bench" / "results")
    shutil.copy(ROOT / "bench" / "README.md", tmp_path / "bench" / "README.md")
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- bench:begin -->")
    row = readme.index("| stream (", begin)
    edited = readme[:row] + readme[row:].replace("×**", "5×**", 1)  # e.g. 1.08× -> 1.085×
    (tmp_path / "README.md").write_text(edited)
    proc = check(tmp_path)
    assert proc.returncode == 1
    assert "README.md" in proc.stderr


def test_a_result_written_by_the_harness_renders_beside_the_older_files(tmp_path: Path) -> None:
    """bench._harness's stamp comes first, numpy scalars are plain numbers, and bench.report reads the
    new shape (commit, dirty, measured_at, machine, versions at the top) next to the checked-in files."""
    shutil.copytree(ROOT / "bench" / "results", tmp_path / "bench" / "results")
    shutil.copy(ROOT / "bench" / "README.md", tmp_path / "bench" / "README.md")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    latencies = [np.float64(0.05), np.float64(0.1), 0.2]
    result = stamp("alert_latency", ["--runs", "3"], "chdb") | {
        "path": "HTTP ingest -> signed webhook",
        "alert_tick_s": 0.5,
        "runs": np.int64(3),
        "latency_s": {"median": latencies[1], "min": latencies[0], "max": latencies[2], "all": latencies},
    }
    path = write_result(tmp_path / "bench" / "results" / "alert_latency.json", result)
    text = path.read_text()
    assert text.endswith("}\n")
    doc = json.loads(text)
    head = ["benchmark", "command", "commit", "dirty", "measured_at", "machine", "versions"]
    assert list(doc)[: len(head)] == head
    assert doc["command"] == "python -m bench.alert_latency --runs 3"
    assert doc["dirty"] == doc["commit"].endswith("+dirty")
    assert doc["runs"] == 3 and doc["latency_s"]["all"] == [0.05, 0.1, 0.2]
    assert {"cpu_model", "nproc", "mem_total_gb", "platform", "python"} <= set(doc["machine"])
    assert set(doc["versions"]) == {"driftline", "chdb"}

    cmd = [sys.executable, "-m", "bench.report", "--root", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    row = next(line for line in (tmp_path / "README.md").read_text().splitlines() if "alert latency" in line)
    assert "median **100 ms** (50–200 ms over 3 runs" in row
    assert row.endswith(f"| `{doc['commit']}`, {doc['measured_at'][:10]} |")
    assert check(tmp_path).returncode == 0
