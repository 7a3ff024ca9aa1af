"""The plain scipy + numpy script that ``python -m bench.compare`` times against ``driftline compare``.

    python bench/scipy_numpy_compare.py REFERENCE.parquet CURRENT.parquet > out.json

What a user would write without driftline: read both Parquet files with pyarrow, then per
numeric column ``scipy.stats.ks_2samp`` (method "auto": exact up to 10,000 rows per sample) and
the decile PSI in numpy (``np.quantile`` deciles of the reference, ``np.searchsorted`` (right) +
``np.bincount``, proportions floored at 1e-4). Serial, one column at a time. Prints one JSON
document: per column PSI, KS D and p-value. Imports nothing of driftline (nor of ``bench``), so
its start-up is that of pyarrow, numpy and scipy.stats alone.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow.parquet as pq
from scipy import stats

PSI_FLOOR = 1e-4


def decile_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    edges = np.quantile(ref, np.arange(1, bins) / bins)
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=bins) / ref.size
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=bins) / cur.size
    r = np.maximum(r, PSI_FLOOR)
    c = np.maximum(c, PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def main(reference: str, current: str) -> int:
    ref = pq.read_table(reference)
    cur = pq.read_table(current)
    out = {}
    for name in ref.column_names:
        r = ref[name].to_numpy()
        c = cur[name].to_numpy()
        ks = stats.ks_2samp(r, c)
        out[name] = {"psi": decile_psi(r, c), "ks_d": float(ks.statistic), "ks_p": float(ks.pvalue)}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
