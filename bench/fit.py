"""How ``NumericBins.fit`` places its edges: time per column and the KS bound it leaves.

Run from the repository root::

    python -m bench.fit              # 1M rows x 20 features (bench.detectors' data), 3 repeats
    python -m bench.fit --quick      # 100k rows

Methods, each over the 20 reference columns (float64, 1,001 edges, deciles as PSI bins):

* ``np_quantile``: ``np.quantile(x, k / 1000)`` (what ``fit`` did before): a partition at 2,002
  order statistics, about a full sort.
* ``numpy_sort``: ``x.sort()`` and numpy's interpolation: exact edges, one full sort per column.
* ``numba_sort``: the same with a Numba ``nogil`` ``np.sort`` (the parallel-sort candidate).
* ``sampled``: ``quantile_edges`` as ``fit`` now does it: exact deciles by selection, fine edges
  from a sorted seeded sample of each decile slot (``FIT_SAMPLE`` values per slot).

Each is timed serially (CPU seconds of this process, and wall) and with 2 threads over columns
(wall; every method releases the GIL). The KS bound of ``stats.KSResult`` is the largest
reference mass strictly inside one fine bin; it is reported for exact and sampled edges on
normal, lognormal, Poisson (ties) and uniform data, from the reference sketch's own counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from bench._machine import commit, cpu_model
from bench.detectors import make_data
from driftline.detectors.numeric import FIT_SAMPLE, NumericBins, NumericSketch, _lerp, quantile_edges

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "fit.json"
BINS, PSI_BINS = 1000, 10


@njit(nogil=True, cache=True)
def _numba_sort(x: np.ndarray) -> None:
    x.sort()


def _virtual(n: int) -> np.ndarray:
    return (n - 1) * (np.arange(BINS + 1) / BINS)


def np_quantile(x: np.ndarray) -> np.ndarray:
    return np.quantile(x, np.arange(BINS + 1) / BINS)


def numpy_sort(x: np.ndarray) -> np.ndarray:
    s = np.sort(x)
    return _lerp(s, _virtual(s.size))


def numba_sort(x: np.ndarray) -> np.ndarray:
    s = x.copy()
    _numba_sort(s)
    return _lerp(s, _virtual(s.size))


def sampled(x: np.ndarray) -> np.ndarray:
    return quantile_edges(x.copy(), BINS, PSI_BINS)


METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "np_quantile": np_quantile,
    "numpy_sort": numpy_sort,
    "numba_sort": numba_sort,
    "sampled": sampled,
}


def time_method(fn: Callable[[np.ndarray], np.ndarray], cols: np.ndarray, repeat: int) -> dict[str, float]:
    fn(cols[0][:1000])  # compile / warm up
    cpu, wall, wall2 = [], [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        for col in cols:
            fn(col)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
        w = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(fn, cols))
        wall2.append(time.perf_counter() - w)
    return {
        "serial_cpu_s": statistics.median(cpu),
        "serial_wall_s": statistics.median(wall),
        "threads2_wall_s": statistics.median(wall2),
    }


def max_inside_mass(x: np.ndarray, edges: np.ndarray) -> float:
    """The KS gap bound: the largest reference mass strictly inside one fine bin."""
    s = NumericSketch(NumericBins(edges, PSI_BINS)).update(x)
    return float((s.counts[1:-1] - s.hits[:-1]).max() / s.n)


def bound_table(rows: int, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    data = {
        "normal": rng.normal(size=rows),
        "lognormal": rng.lognormal(size=rows),
        "poisson_ties": rng.poisson(3.0, rows).astype(np.float64),
        "uniform": rng.uniform(size=rows),
    }
    return {
        name: {
            "exact": max_inside_mass(x, np_quantile(x)),
            "sampled": max_inside_mass(x, sampled(x)),
            "one_over_bins": 1 / BINS,
        }
        for name, x in data.items()
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--quick", action="store_true", help="100k rows, 1 repeat")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    if args.quick:
        args.rows, args.repeat = 100_000, 1
    ref, _, names = make_data(args.rows, args.features, args.seed)
    for f in range(ref.shape[0]):  # every method must give np.quantile's deciles
        step = BINS // PSI_BINS
        assert np.array_equal(sampled(ref[f])[::step], np_quantile(ref[f])[::step]), names[f]
    timings = {name: time_method(fn, ref, args.repeat) for name, fn in METHODS.items()}
    base = timings["np_quantile"]["serial_cpu_s"]
    for t in timings.values():
        t["speedup_cpu_vs_np_quantile"] = base / t["serial_cpu_s"]
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "cpu_model": cpu_model(),
        "rows": args.rows,
        "features": args.features,
        "fine_bins": BINS,
        "psi_bins": PSI_BINS,
        "fit_sample_per_slot": FIT_SAMPLE,
        "repeat": args.repeat,
        "fit_seconds_for_all_features": timings,
        "largest_fine_bin_mass": bound_table(args.rows, args.seed),
        "load_average_at_end": list(np.round(_loadavg(), 2)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _loadavg() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    raise SystemExit(main())
