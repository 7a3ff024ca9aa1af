"""How ``NumericBins.fit`` places its edges: time per column and the KS bound it leaves.

Run from the repository root::

    python -m bench.fit              # 1M rows x 20 features (bench.detectors' data), 3 repeats
    python -m bench.fit --quick      # 100k rows, 1 repeat; JSON to the temporary directory

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

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from bench._harness import out_path, parser, stamp, write_result
from bench.detectors import make_data
from driftline.detectors.numeric import FIT_SAMPLE, NumericBins, NumericSketch, _lerp, quantile_edges

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


def main(argv: list[str] | None = None) -> int:
    p = parser("fit", __doc__, "100k rows, 1 repeat")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=20261126)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 100_000, 1
    result = stamp("fit", argv, "numpy", "numba")
    ref, _, names = make_data(args.rows, args.features, args.seed)
    for f in range(ref.shape[0]):  # every method must give np.quantile's deciles
        step = BINS // PSI_BINS
        assert np.array_equal(sampled(ref[f])[::step], np_quantile(ref[f])[::step]), names[f]
    timings = {name: time_method(fn, ref, args.repeat) for name, fn in METHODS.items()}
    base = timings["np_quantile"]["serial_cpu_s"]
    for t in timings.values():
        t["speedup_cpu_vs_np_quantile"] = base / t["serial_cpu_s"]
    result |= {
        "rows": args.rows,
        "features": args.features,
        "fine_bins": BINS,
        "psi_bins": PSI_BINS,
        "fit_sample_per_slot": FIT_SAMPLE,
        "repeat": args.repeat,
        "fit_seconds_for_all_features": timings,
        "largest_fine_bin_mass": bound_table(args.rows, args.seed),
    }
    out = write_result(out_path("fit", args), result)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
