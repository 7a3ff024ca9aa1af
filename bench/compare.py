"""The whole ``driftline compare`` CLI against a scipy + numpy script, NannyML and Evidently.

Run from the repository root::

    python -m bench.compare --profile --whole-table   # every scenario below (≈10 min here)
    python -m bench.compare --quick                   # smoke: 100k x 20, 2 rounds, no wide; JSON to /tmp
    # options: --rounds N, --slow-rounds N, --small-rounds N, --startup-runs N, --wide-runs N,
    #          --skip-wide, --no-nannyml, --no-evidently, --profile, --whole-table, --dir, --out

Every contender is a subprocess timed from spawn to exit (imports, start-up, reading the Parquet
files and printing included): wall time, the time to the first byte of its standard output, CPU
time from ``os.wait4``, and peak RSS from ``/usr/bin/time -f %M`` (the command's own
``ru_maxrss``: ``wait4``'s would include this process's RSS at the fork). Contenders take turns
within each round (A B C D, A B C D, ...), after one untimed warm-up run of the CLI and of the
script (page cache, Numba cache); medians over the rounds are reported, ratios as the median of
the rounds' ratios. Scenarios:

* **main** (1M vs 1M rows x 20 numeric features, the issue's acceptance): ``python -m
  driftline.cli compare --reference R --current C --json`` against ``bench/scipy_numpy_compare.py``
  (pyarrow read, ``scipy.stats.ks_2samp`` + numpy decile PSI per column, serial), NannyML's
  ``UnivariateDriftCalculator`` (``bench/nannyml_runner.py`` in its own venv) and Evidently's
  ``DataDriftPreset`` (``bench/evidently_runner.py --repeat 0`` in its own venv). The two venvs
  are made as their docstrings say; a missing one is skipped with the reason recorded.
* **small** (10k vs 10k rows x 10): the CLI against the scipy + numpy script. At 10,000 rows per
  sample both compute the exact KS p-value (driftline with its own kernel, without scipy.stats).
* **wide** (200k vs 200k rows x 1,000): the CLI alone, wall time and peak RSS.
* **start-up**: ``python -c pass``, ``driftline compare --help`` and the CLI on 100 rows x 20 (time
  to first byte), interleaved; then ``python -X importtime`` of the CLI on each file size: which
  modules it imports (chdb, fastapi, confluent_kafka, clickhouse_connect and scipy.stats must not
  be imported at any size) and the top-level imports by cumulative time.

Checks (non-zero exit if any fails): on every column of main and small, and on ``--check``
columns of the wide file, the report's PSI equals the numpy decile PSI exactly and scipy's exact
D lies inside ``[statistic, statistic_upper]``; the p-values are compared with scipy's for
information. The data: ``bench.detectors``' five shapes (every 10th column drifted), written
once as Parquet (row groups of 50k) to ``--dir`` and reused. The driftline subprocesses run from
a copy of ``src/`` taken at the start (``PYTHONPATH``), so edits to the tree during the run do
not change what is measured; its sha256 is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats as sps

from bench._harness import (
    ROOT,
    driftline_cli,
    out_path,
    parser,
    profile_rows,
    snapshot_src,
    stamp,
    write_result,
)
from bench.detectors import EVIDENTLY_INSTALL, EVIDENTLY_PYTHON, SHAPES, _draw, numpy_psi

DEFAULT_DIR = Path(tempfile.gettempdir()) / "driftline-compare-bench"
NANNYML_PYTHON = "/tmp/nannyml-venv/bin/python"
NANNYML_INSTALL = "python -m venv /tmp/nannyml-venv && /tmp/nannyml-venv/bin/pip install nannyml statsmodels"
MEASURED = ("numpy", "numba", "scipy", "polars", "pyarrow", "orjson")
ROW_GROUP = 50_000
SEED = 7
# Not to be imported by `driftline compare` on files of more than 10,000 rows.
FORBIDDEN = ("chdb", "fastapi", "confluent_kafka", "clickhouse_connect", "scipy.stats")
WATCHED = (*FORBIDDEN, "numba", "polars", "pyarrow", "scipy.special", "pandas")
TARGETS = {
    "main_over_scipy_numpy": 4.0,  # the CLI at least 4x faster than the script
    "main_over_nannyml": 1.0,  # faster than NannyML
    "small_over_scipy_numpy": 1.0,  # no slower than the script
    "wide_wall_s": 30.0,
    "wide_peak_rss_gib": 1.0,
}
BOUND_EPS = 1e-12  # float noise allowed on the [statistic, statistic_upper] containment

DRIFTLINE_ENV = dict(os.environ)  # PYTHONPATH gets the snapshot of src/ (harness.snapshot_src)
PLAIN_ENV = dict(os.environ)


# --------------------------------------------------------------------------------------------
# data


def write_file(path: Path, rows: int, features: int, seed: int, drifted: bool) -> None:
    """``features`` float64 columns named ``fNNNN_shape``; in the current file (``drifted``)
    every 10th column is shifted as ``bench.detectors`` shifts its drifted features."""
    names = [f"f{f:04d}_{SHAPES[f % len(SHAPES)]}" for f in range(features)]
    schema = pa.schema([(name, pa.float64()) for name in names])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            rng = np.random.default_rng([seed, start])
            arrays = [
                pa.array(_draw(rng, SHAPES[f % len(SHAPES)], n, drifted and f % 10 == 0))
                for f in range(features)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    tmp.rename(path)


def files(directory: Path, rows: int, features: int, seed: int = SEED) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    ref = directory / f"ref-{rows}x{features}-{seed}.parquet"
    cur = directory / f"cur-{rows}x{features}-{seed}.parquet"
    for path, drifted, s in ((ref, False, seed), (cur, True, seed + 1)):
        if not path.exists():
            t = time.perf_counter()
            write_file(path, rows, features, s, drifted)
            print(f"wrote {path} in {time.perf_counter() - t:.1f} s", flush=True)
    return ref, cur


# --------------------------------------------------------------------------------------------
# one timed subprocess


def run(cmd: list[str], env: dict[str, str], label: str) -> dict[str, Any]:
    """Spawn ``cmd`` under ``/usr/bin/time``, read its stdout to the end, reap it with ``os.wait4``.

    Returns wall and first-byte times (from just before the spawn), CPU time (``wait4``), peak RSS
    (GNU time's ``%M``: the ``ru_maxrss`` of the command itself; ``wait4``'s own ``ru_maxrss``
    would include this process's RSS at the fork), the 1-minute load average before the spawn,
    and the stdout bytes (key ``stdout``, not stored).
    """
    load = os.getloadavg()[0]
    err: list[bytes] = []
    with tempfile.NamedTemporaryFile(prefix="driftline-bench-rss-") as rss:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        chunks, first = [], None
        while chunk := os.read(fd, 1 << 16):
            if first is None:
                first = time.perf_counter() - t0
            chunks.append(chunk)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        reader.join()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        if proc.returncode:
            raise SystemExit(f"{label} failed (exit {proc.returncode}): {b''.join(err).decode()[-3000:]}")
        rss_kib = int(Path(rss.name).read_text().split()[-1])
    return {
        "wall_s": wall,
        "first_byte_s": first,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": rss_kib / 1024,
        "loadavg_1m_before": round(load, 2),
        "stdout": b"".join(chunks),
    }


def cli(ref: Path, cur: Path) -> list[str]:
    return driftline_cli("compare", "--reference", str(ref), "--current", str(cur), "--json")


def scipy_numpy(ref: Path, cur: Path) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "scipy_numpy_compare.py"), str(ref), str(cur)]


class Contender:
    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], parse: Callable[[bytes], Any] = json.loads
    ) -> None:
        self.name, self.cmd, self.env, self.parse = name, cmd, env, parse
        self.runs: list[dict[str, Any]] = []
        self.output: Any = None

    def once(self, keep: bool = True) -> None:
        r = run(self.cmd, self.env, self.name)
        self.output = self.parse(r.pop("stdout"))
        if keep:
            self.runs.append(r)
            print(f"  {self.name}: {r['wall_s']:.2f} s, {r['peak_rss_mib']:.0f} MiB", flush=True)

    def summary(self) -> dict[str, Any]:
        walls = [r["wall_s"] for r in self.runs]
        return {
            "wall_s": statistics.median(walls),
            "wall_s_range": [min(walls), max(walls)],
            "cpu_s": statistics.median(r["cpu_s"] for r in self.runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in self.runs),
            "runs": self.runs,
        }


def rounds(contenders: list[Contender], n: int, slow: dict[str, int] | None = None) -> None:
    """``n`` rounds of every contender in turn; a contender in ``slow`` runs only in its first rounds."""
    for i in range(n):
        print(f"round {i + 1}/{n} (load {os.getloadavg()[0]:.2f})", flush=True)
        for c in contenders:
            if slow is None or i < slow.get(c.name, n):
                c.once()


def ratio(base: Contender, ours: Contender, target: float | None) -> dict[str, Any]:
    """Per round: base wall ÷ ours wall (the rounds both ran); their median and range."""
    per = [b["wall_s"] / o["wall_s"] for b, o in zip(base.runs, ours.runs, strict=False)]
    med = statistics.median(per)
    out: dict[str, Any] = {"median": med, "range": [min(per), max(per)], "per_round": per}
    if target is not None:
        out |= {"target": target, "met": med >= target}
    return out


# --------------------------------------------------------------------------------------------
# checks against the oracles


def check_columns(
    report: dict[str, Any], ref: Path, cur: Path, columns: list[str], scipy_out: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """PSI == numpy decile PSI exactly; scipy's exact D inside [statistic, statistic_upper]."""
    rows, failures = [], []
    if scipy_out is None:
        r_table, c_table = pq.read_table(ref, columns=columns), pq.read_table(cur, columns=columns)
    for name in columns:
        f = report["features"][name]
        if scipy_out is not None:
            psi, d, p = scipy_out[name]["psi"], scipy_out[name]["ks_d"], scipy_out[name]["ks_p"]
        else:
            r, c = r_table[name].to_numpy(), c_table[name].to_numpy()
            ks = sps.ks_2samp(r, c)
            psi, d, p = numpy_psi(r, c), float(ks.statistic), float(ks.pvalue)
        lo, hi = f["ks"]["statistic"], f["ks"]["statistic_upper"]
        inside = lo - BOUND_EPS <= d <= hi + BOUND_EPS
        rows.append(
            {
                "feature": name,
                "psi": f["psi"],
                "psi_numpy": psi,
                "psi_equal": f["psi"] == psi,
                "ks_d": lo,
                "ks_d_upper": hi,
                "ks_d_scipy": d,
                "scipy_d_within_bounds": inside,
                "ks_p": f["ks"]["p_value"],
                "ks_p_scipy": p,
            }
        )
        if f["psi"] != psi:
            failures.append(f"{name}: PSI {f['psi']!r} != numpy {psi!r}")
        if not inside:
            failures.append(f"{name}: scipy D {d} outside [{lo}, {hi}]")
    return rows, failures


def check_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rel = [
        abs(r["ks_p"] - r["ks_p_scipy"]) / r["ks_p_scipy"]
        for r in rows
        if r["ks_p_scipy"] >= 1e-3 and math.isfinite(r["ks_p"])
    ]
    return {
        "columns": len(rows),
        "psi_equal": sum(r["psi_equal"] for r in rows),
        "max_psi_abs_diff": max(abs(r["psi"] - r["psi_numpy"]) for r in rows),
        "scipy_d_within_bounds": sum(r["scipy_d_within_bounds"] for r in rows),
        "max_ks_d_upper_minus_d": max(r["ks_d_upper"] - r["ks_d"] for r in rows),
        "max_ks_p_rel_diff_where_scipy_p_ge_1e-3": max(rel) if rel else None,
        "columns_with_scipy_p_ge_1e-3": len(rel),
        "note": "p-values: driftline's from its D lower bound (Stephens' limit law above 10,000 rows per"
        " sample, exact at or below), scipy's from its exact D; information, not a check",
    }


def spread(names: list[str], k: int) -> list[str]:
    """``k`` columns spread over the file and over the five shapes (column f has shape f % 5)."""
    step = max(1, len(names) // k)
    return list(dict.fromkeys(names[(i * step + i) % len(names)] for i in range(k)))


# --------------------------------------------------------------------------------------------
# venv contenders


def probe(module: str) -> str:
    return f"import {module}, pandas; print('{module}', {module}.__version__, 'pandas', pandas.__version__)"


def venv_contender(
    name: str, python: str, probe: str, install: str, cmd: list[str], enabled: bool
) -> tuple[Contender | None, dict[str, Any]]:
    if not enabled:
        return None, {"skipped": f"disabled with --no-{name}"}
    if not Path(python).exists():
        return None, {"skipped": f"{python} does not exist; make it with: {install}"}
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return None, {"skipped": f"`{probe}` failed in {python}: {tail}"}
    return Contender(name, [python, *cmd], PLAIN_ENV), {"versions": proc.stdout.strip()}


# --------------------------------------------------------------------------------------------
# start-up and imports


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")
# Runs the CLI as `python -m driftline.cli` does and writes the names in sys.modules at exit to
# the file named by $BENCH_MODULES_OUT: `-X importtime` alone misses some modules (scipy.special,
# imported through scipy's lazy module __getattr__, has no line of its own).
_WITH_MODULES = """
import json, os, runpy, sys
sys.argv = ["driftline", *sys.argv[1:]]
try:
    runpy.run_module("driftline.cli", run_name="__main__", alter_sys=True)
finally:
    with open(os.environ["BENCH_MODULES_OUT"], "w") as out:
        json.dump(sorted(sys.modules), out)
"""


def importtime(args: list[str]) -> dict[str, Any]:
    """``python -X importtime`` of ``driftline ARGS``: which modules it imports, and how long the
    program's own top-level imports take (cumulative, as ``-X importtime`` reports them)."""
    with tempfile.NamedTemporaryFile(prefix="driftline-bench-modules-", mode="r") as names:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", _WITH_MODULES, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=DRIFTLINE_ENV | {"BENCH_MODULES_OUT": names.name},
        )
        modules = set(json.load(names))
    timed: dict[str, int] = {}
    top: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            timed[m.group(4)] = int(m.group(2))
            if not m.group(3):  # imported by the program itself, not by another module
                top.append((int(m.group(2)), m.group(4)))
    top.sort(reverse=True)
    return {
        "exit": proc.returncode,
        "modules": len(modules),
        "imported": {name: name in modules for name in WATCHED},
        "cumulative_import_s": {name: timed[name] / 1e6 for name in WATCHED if name in timed},
        "top_level_by_cumulative_s": [[name, us / 1e6] for us, name in top[:12]],
    }


def startup(args: argparse.Namespace, tiny: tuple[Path, Path]) -> dict[str, Any]:
    python = Contender("python -c pass", [sys.executable, "-c", "pass"], PLAIN_ENV, lambda b: None)
    helps = Contender(
        "driftline compare --help",
        driftline_cli("compare", "--help"),
        DRIFTLINE_ENV,
        lambda b: b.decode(),
    )
    small = Contender("driftline compare, 100 rows", cli(*tiny), DRIFTLINE_ENV)
    for c in (python, helps, small):
        c.once(keep=False)
    rounds([python, helps, small], args.startup_runs)
    ttfb = [r["first_byte_s"] for r in small.runs]
    return {
        "python_pass": python.summary(),
        "help": helps.summary(),
        "tiny_file": small.summary()
        | {"first_byte_s": statistics.median(ttfb), "first_byte_s_range": [min(ttfb), max(ttfb)]},
    }


# --------------------------------------------------------------------------------------------
# profile


def profile(cmd: list[str], top: int = 15) -> dict[str, Any]:
    """cProfile of one CLI run (the main thread only: the fitting and folding threads are not in it)."""
    with tempfile.TemporaryDirectory(prefix="driftline-cmp-prof-") as tmp:
        out = Path(tmp) / "prof.out"
        subprocess.run(
            [cmd[0], "-m", "cProfile", "-o", str(out), *cmd[1:]],
            stdout=subprocess.DEVNULL,
            check=True,
            cwd=ROOT,
            env=DRIFTLINE_ENV,
        )
        st = pstats.Stats(str(out))
    return {
        "total_s": st.total_tt,  # type: ignore[attr-defined]
        "top_tottime": profile_rows(st, "tottime", top),
        "top_cumtime": profile_rows(st, "cumtime", top),
    }


_WHOLE = """
import sys, orjson
from driftline.detectors.profile import ModelSketch, Thresholds, drift_report
from driftline.ingest.files import TableSpec, load_reference, read_table, to_batch
spec = TableSpec()
reference, kinds = load_reference(sys.argv[1], spec, 1000, 10)
cur = read_table(sys.argv[2])
current = ModelSketch(reference.binning).update(to_batch(cur, spec, kinds), threads=min(4, len(kinds)))
del cur
sys.stdout.buffer.write(orjson.dumps(drift_report(reference, current, Thresholds())))
"""


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser("compare", __doc__, "100k x 20, 2 rounds, no wide file")
    p.add_argument("--rows", type=int, default=1_000_000, help="main scenario rows per file")
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5, help="rounds of the CLI and the scipy + numpy script")
    p.add_argument("--slow-rounds", type=int, default=3, help="of those, rounds with NannyML and Evidently")
    p.add_argument("--small-rounds", type=int, default=9)
    p.add_argument("--startup-runs", type=int, default=9)
    p.add_argument("--wide-runs", type=int, default=3)
    p.add_argument("--check", type=int, default=10, help="wide file: columns checked against the oracles")
    p.add_argument("--skip-wide", action="store_true")
    p.add_argument("--no-nannyml", action="store_true")
    p.add_argument("--no-evidently", action="store_true")
    p.add_argument("--nannyml-python", default=NANNYML_PYTHON)
    p.add_argument("--evidently-python", default=EVIDENTLY_PYTHON)
    p.add_argument("--profile", action="store_true", help="add a cProfile run of the CLI (main and wide)")
    p.add_argument(
        "--whole-table",
        action="store_true",
        help="add one run of the pre-compare_tables path (whole tables in memory) on the wide file",
    )
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the Parquet files are kept")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.rounds, args.slow_rounds = 100_000, 2, 1
        args.small_rounds, args.startup_runs, args.skip_wide = 2, 2, True
    args.out = out_path("compare", args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failures: list[str] = []
    result: dict[str, Any] = stamp("compare", argv, *MEASURED) | {"targets": TARGETS}
    main_files = files(args.dir, args.rows, args.features)
    small_files = files(args.dir, 10_000, 10)
    tiny_files = files(args.dir, 100, 20)
    wide_files = None if args.skip_wide else files(args.dir, 200_000, 1000)

    with tempfile.TemporaryDirectory(prefix="driftline-bench-compare-") as work:
        result["code"] = {"src_sha256_measured": snapshot_src(Path(work), DRIFTLINE_ENV)}
        where = subprocess.run(
            [sys.executable, "-c", "import driftline; print(driftline.__file__)"],
            capture_output=True,
            text=True,
            env=DRIFTLINE_ENV,
        ).stdout.strip()
        if not where.startswith(work):
            raise SystemExit(f"driftline subprocesses import {where}, not the snapshot in {work}")

        # ---- start-up
        print("start-up ...", flush=True)
        result["startup"] = startup(args, tiny_files)
        result["imports"] = {
            "help": importtime(["compare", "--help"]),
            "rows_100": importtime(cli(*tiny_files)[3:]),
            "rows_10000": importtime(cli(*small_files)[3:]),
            f"rows_{args.rows}": importtime(cli(*main_files)[3:]),
        }
        result["startup"]["forbidden_imported"] = sorted(
            {m for run in result["imports"].values() for m in FORBIDDEN if run["imported"][m]}
        )
        if result["startup"]["forbidden_imported"]:
            failures.append(f"imported: {result['startup']['forbidden_imported']}")

        # ---- small
        print("small: 10k x 10 ...", flush=True)
        ours, base = (
            Contender("driftline", cli(*small_files), DRIFTLINE_ENV),
            Contender("scipy_numpy", scipy_numpy(*small_files), PLAIN_ENV),
        )
        ours.once(keep=False)
        base.once(keep=False)
        rounds([ours, base], args.small_rounds)
        rows, fails = check_columns(ours.output, *small_files, sorted(base.output), base.output)
        failures += fails
        result["small"] = {
            "rows": 10_000,
            "features": 10,
            "driftline": ours.summary(),
            "scipy_numpy": base.summary(),
            "ratio_scipy_numpy_over_driftline": ratio(base, ours, TARGETS["small_over_scipy_numpy"]),
            "checks": check_summary(rows),
            "check_rows": rows,
        }

        # ---- main
        print(f"main: {args.rows:,} x {args.features} ...", flush=True)
        ref, cur = main_files
        ours, base = (
            Contender("driftline", cli(ref, cur), DRIFTLINE_ENV),
            Contender("scipy_numpy", scipy_numpy(ref, cur), PLAIN_ENV),
        )
        nannyml, nml_info = venv_contender(
            "nannyml",
            args.nannyml_python,
            probe("nannyml"),
            NANNYML_INSTALL,
            [str(ROOT / "bench" / "nannyml_runner.py"), str(ref), str(cur)],
            not args.no_nannyml,
        )
        evidently, ev_info = venv_contender(
            "evidently",
            args.evidently_python,
            probe("evidently"),
            EVIDENTLY_INSTALL,
            [
                str(ROOT / "bench" / "evidently_runner.py"),
                str(ref),
                str(cur),
                "--repeat",
                "0",
                "--methods",
                "default",
            ],
            not args.no_evidently,
        )
        ours.once(keep=False)
        base.once(keep=False)
        contenders = [c for c in (ours, base, nannyml, evidently) if c is not None]
        rounds(contenders, args.rounds, {"nannyml": args.slow_rounds, "evidently": args.slow_rounds})
        rows, fails = check_columns(ours.output, ref, cur, sorted(base.output), base.output)
        failures += fails
        main_result: dict[str, Any] = {
            "rows": args.rows,
            "features": args.features,
            "driftline": ours.summary(),
            "scipy_numpy": base.summary(),
            "ratio_scipy_numpy_over_driftline": ratio(base, ours, TARGETS["main_over_scipy_numpy"]),
            "drifted_features": len(ours.output["drifted_features"]),
            "checks": check_summary(rows),
            "check_rows": rows,
        }
        for c, info, target in (
            (nannyml, nml_info, TARGETS["main_over_nannyml"]),
            (evidently, ev_info, None),
        ):
            name = "nannyml" if info is nml_info else "evidently"
            if c is None:
                main_result[name] = info
                continue
            main_result[name] = info | c.summary()
            main_result[f"ratio_{name}_over_driftline"] = ratio(c, ours, target)
        if nannyml is not None:
            out = nannyml.output
            main_result["nannyml"] |= {
                "version": out["version"],
                "pandas": out["pandas"],
                "methods": out["methods"],
                "chunk_number": out["chunk_number"],
                "phases_s_last_run": out["phases_s"],
                "max_ks_d_abs_diff_vs_scipy": max(
                    abs(v["kolmogorov_smirnov"] - base.output[n]["ks_d"]) for n, v in out["values"].items()
                ),
            }
        if evidently is not None:
            out = evidently.output
            cols = out["methods"]["default"]["columns"]
            main_result["evidently"] |= {
                "version": out["version"],
                "preset": "DataDriftPreset(method=None): Evidently picks each column's test",
                "methods_chosen": sorted({v["method"] for k, v in cols.items() if not k.startswith("__")}),
                "drifted_columns": cols.get("__drifted_columns__"),
                "import_s_last_run": out["import_s"],
                "read_s_last_run": out["read_s"],
                "report_s_last_run": out["methods"]["default"]["median_s"],
            }
        if args.profile:
            print("profile (main) ...", flush=True)
            main_result["profile"] = profile(cli(ref, cur))
        result["main"] = main_result

        # ---- wide
        if wide_files is not None:
            print("wide: 200k x 1,000 ...", flush=True)
            ours = Contender("driftline", cli(*wide_files), DRIFTLINE_ENV)
            ours.once(keep=False)
            rounds([ours], args.wide_runs)
            names = sorted(ours.output["features"])
            rows, fails = check_columns(ours.output, *wide_files, spread(names, args.check), None)
            failures += fails
            s = ours.summary()
            wide: dict[str, Any] = {
                "rows": 200_000,
                "features": 1000,
                "file_bytes": {
                    "reference": wide_files[0].stat().st_size,
                    "current": wide_files[1].stat().st_size,
                },
                "driftline": s,
                "wall_target_s": TARGETS["wide_wall_s"],
                "wall_met": s["wall_s"] <= TARGETS["wide_wall_s"],
                "peak_rss_gib": s["peak_rss_mib"] / 1024,
                "peak_rss_target_gib": TARGETS["wide_peak_rss_gib"],
                "peak_rss_met": s["peak_rss_mib"] / 1024 <= TARGETS["wide_peak_rss_gib"],
                "drifted_features": len(ours.output["drifted_features"]),
                "checks": check_summary(rows),
                "check_rows": rows,
            }
            if args.whole_table:
                print("wide, whole-table path ...", flush=True)
                whole = Contender(
                    "whole_table", [sys.executable, "-c", _WHOLE, *map(str, wide_files)], DRIFTLINE_ENV
                )
                whole.once()
                wide["whole_table_path"] = whole.summary() | {
                    "note": "load_reference + read_table of the current file + one ModelSketch.update:"
                    " the path `driftline compare` took before ingest/compare.py, for comparison",
                }
            if args.profile:
                print("profile (wide) ...", flush=True)
                wide["profile"] = profile(cli(*wide_files))
            result["wide"] = wide

    result["failures"] = failures
    result["summary"] = summarize(result)
    write_result(args.out, result)
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {args.out}")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    m, s, st = r["main"], r["small"], r["startup"]
    loads = [
        run["loadavg_1m_before"]
        for part in (m, s, r.get("wide", {}))
        for key in ("driftline", "scipy_numpy", "nannyml", "evidently")
        for run in part.get(key, {}).get("runs", [])
    ]
    out: dict[str, Any] = {
        "main_driftline_s": m["driftline"]["wall_s"],
        "main_scipy_numpy_s": m["scipy_numpy"]["wall_s"],
        "main_ratio_scipy_numpy": m["ratio_scipy_numpy_over_driftline"]["median"],
        "main_ratio_scipy_numpy_met": m["ratio_scipy_numpy_over_driftline"]["met"],
        "small_ratio_scipy_numpy": s["ratio_scipy_numpy_over_driftline"]["median"],
        "small_ratio_scipy_numpy_met": s["ratio_scipy_numpy_over_driftline"]["met"],
        "help_s": st["help"]["wall_s"],
        "tiny_first_byte_s": st["tiny_file"]["first_byte_s"],
        "forbidden_imported": st["forbidden_imported"],
        "checks_passed": not r["failures"],
        "loadavg_1m_before_runs": [min(loads), max(loads)] if loads else None,
    }
    for name in ("nannyml", "evidently"):
        key = f"ratio_{name}_over_driftline"
        out[f"main_ratio_{name}"] = m[key]["median"] if key in m else None
    if "wide" in r:
        w = r["wide"]
        out |= {
            "wide_s": w["driftline"]["wall_s"],
            "wide_peak_rss_gib": w["peak_rss_gib"],
            "wide_met": w["wall_met"] and w["peak_rss_met"],
        }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
