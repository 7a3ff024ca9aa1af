"""What every benchmark shares: the facts a result is stamped with, and how it is written.

A benchmark starts its result with ``stamp(name, argv, *packages)`` and ends with
``write_result(path, result)``. The stamp (``benchmark``, ``command``, ``commit``, ``dirty``,
``measured_at``, ``machine``, ``versions``) is what ``bench.report`` prints beside every figure:
how it was run, at which commit, when, on what machine, with which versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HEAD = ("benchmark", "command", "commit", "dirty", "measured_at", "machine", "versions")  # stamp()'s keys


# --------------------------------------------------------------------------------------------
# the stamp


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded: other work shares the machine."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """CPU model, the cores this process may use (``nproc``) and has (``cpu_count``), memory, OS,
    Python, and the load average now."""
    return {
        "cpu_model": cpu_model(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "mem_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": loadavg(),
    }


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of driftline and of the packages the benchmark measures (None: not
    installed), as ``importlib.metadata`` names them."""
    out: dict[str, str | None] = {}
    for name in ("driftline", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def commit() -> str:
    """``git rev-parse --short HEAD``, plus "+dirty" when src/ has uncommitted (or untracked) files."""
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if _git("status", "--porcelain", "--", "src") else "")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def command(name: str, argv: list[str] | None) -> str:
    """How the benchmark was started: ``python -m bench.NAME ARGS``."""
    return " ".join([f"python -m bench.{name}", *(sys.argv[1:] if argv is None else argv)])


def stamp(name: str, argv: list[str] | None, *packages: str) -> dict[str, Any]:
    """The head of every result, taken when the measurement starts (edits made while it runs do
    not change it): the benchmark and its command line, then ``commit``, ``dirty``,
    ``measured_at``, ``machine``, and the versions of ``packages``."""
    sha = commit()
    return {
        "benchmark": f"bench.{name}",
        "command": command(name, argv),
        "commit": sha,
        "dirty": sha.endswith("+dirty"),
        "measured_at": now(),
        "machine": machine(),
        "versions": versions(*packages),
    }


# --------------------------------------------------------------------------------------------
# arguments and output


def parser(name: str, doc: str, quick: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the two options every one has: ``--quick`` (a smoke run,
    ``quick`` says what it shrinks) and ``--out``."""
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.split("\n")[0])
    p.add_argument(
        "--quick", action="store_true", help=f"smoke run: {quick}; JSON to the temporary directory"
    )
    p.add_argument(
        "--out", type=Path, help=f"default bench/results/{name}.json, with --quick {quick_out(name)}"
    )
    return p


def quick_out(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"driftline-bench-{name}-quick.json"


def out_path(name: str, args: argparse.Namespace) -> Path:
    """``--out``, else bench/results/NAME.json; a ``--quick`` run never replaces a checked-in result."""
    return args.out or (quick_out(name) if args.quick else RESULTS / f"{name}.json")


def _plain(o: Any) -> Any:
    """``o`` as JSON can hold it: numpy scalars and arrays as Python numbers and lists, tuples as
    lists, non-finite floats as null, anything else (paths, ...) as its string: a result measured
    for minutes is not lost to an odd value."""
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_plain(v) for v in o]
    if isinstance(o, float):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, str | int | bool) or o is None:
        return o
    if hasattr(o, "tolist"):  # numpy scalar or array
        return _plain(o.tolist())
    return str(o)


def write_result(path: Path, result: dict[str, Any]) -> Path:
    """Write ``result`` as indented JSON with a trailing newline, its stamp first: the one it
    carries (``stamp()`` at its start), with any key it lacks taken now; then ``finished_at`` and
    ``loadavg_at_end``, now."""
    doc = {key: result[key] for key in HEAD if key in result}
    doc.setdefault("commit", commit())
    doc.setdefault("dirty", doc["commit"].endswith("+dirty"))
    doc.setdefault("measured_at", now())
    doc.setdefault("machine", machine())
    doc.setdefault("versions", versions())
    doc |= result
    doc |= {"finished_at": now(), "loadavg_at_end": loadavg()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(doc), indent=2, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# measuring driftline


def roles() -> dict[str, Any]:
    """The simulator's column roles (``driftline.simulate``), as ``TableSpec`` takes them."""
    from driftline.simulate import SEGMENTS

    return {"segments": list(SEGMENTS), "prediction": "prediction", "label": "label", "latency": "latency_ms"}


def role_args() -> list[str]:
    """The same roles as the CLI takes them (``driftline reference build``, ``compare``, ...)."""
    r = roles()
    args = ["--segments", ",".join(r["segments"])]
    for key in ("prediction", "label", "latency"):
        args += [f"--{key}", r[key]]
    return args


def driftline_cli(*args: str) -> list[str]:
    """``driftline ARGS`` as a subprocess command, with this interpreter."""
    return [sys.executable, "-m", "driftline.cli", *args]


def snapshot_src(work: Path, env: dict[str, str]) -> str:
    """Copy src/ into ``work`` and point ``env``'s PYTHONPATH at the copy, so that edits to the tree
    during a run neither mix code versions nor make Numba recompile mid-run (its __pycache__ is
    copied with the sources' mtimes, so its cache stays valid). Returns the copy's sha256."""
    shutil.copytree(ROOT / "src", work / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "src"), os.environ.get("PYTHONPATH")]))
    h = hashlib.sha256()
    for path in sorted((work / "src" / "driftline").rglob("*.py")):
        h.update(str(path.relative_to(work)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def profile_rows(st: pstats.Stats, order: str, top: int) -> list[dict[str, Any]]:
    """The ``top`` functions of a cProfile run by ``order`` ("tottime" or "cumtime"), paths cut to
    the package (``driftline/ingest/scan.py``)."""
    rows = []
    for (file, line, fn), (_cc, calls, tottime, cumtime, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = re.sub(r".*/(site-packages|src|lib/python3\.\d+)/", "", file)
        rows.append(
            {"function": f"{where}:{line}({fn})", "calls": calls, "tottime_s": tottime, "cumtime_s": cumtime}
        )
    return sorted(rows, key=lambda r: -r[f"{order}_s"])[:top]
