"""The benchmark figures in README.md and bench/README.md are generated from bench/results/*.json:
a hand edit or a table older than its JSON fails here (fix: ``python -m bench.report``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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
