"""NannyML's univariate drift calculator on two Parquet files; run inside a venv that has nannyml.

Invoked by ``python -m bench.compare`` with the venv's interpreter, as a whole process (imports
and reading included), like ``driftline compare``. It imports nothing of driftline, so it runs
where only nannyml (with pandas, pyarrow and statsmodels) is installed; nannyml 0.13.1 imports
statsmodels without declaring it::

    python -m venv /tmp/nannyml-venv && /tmp/nannyml-venv/bin/pip install nannyml statsmodels
    /tmp/nannyml-venv/bin/python bench/nannyml_runner.py REF.parquet CUR.parquet

``UnivariateDriftCalculator`` on every column (all numeric), with the continuous methods
Kolmogorov-Smirnov, Jensen-Shannon and Wasserstein (driftline reports these three and PSI) and
``chunk_number=1``: the whole current file is one chunk, as ``driftline compare`` treats it
(NannyML's default chunker would cut it in 10 and compute every method 10 times). ``fit`` also
computes every method on the reference's chunk, for its thresholds. Prints one JSON document: version,
phase times (import, read, fit, calculate) and each column's values.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

# No usage telemetry (the machine has no network; a blocked send would be timed), and no warning per
# column that one chunk is "too low a number of chunks".
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
warnings.filterwarnings("ignore", message="The resulting number of chunks is too low")

METHODS = ["kolmogorov_smirnov", "jensen_shannon", "wasserstein"]


def main(reference: str, current: str) -> int:
    t0 = time.perf_counter()
    import nannyml
    import pandas as pd

    t1 = time.perf_counter()
    ref = pd.read_parquet(reference)
    cur = pd.read_parquet(current)
    t2 = time.perf_counter()
    names = list(ref.columns)
    calc = nannyml.UnivariateDriftCalculator(
        column_names=names, continuous_methods=METHODS, treat_as_numerical=names, chunk_number=1
    )
    calc.fit(ref)
    t3 = time.perf_counter()
    result = calc.calculate(cur)
    t4 = time.perf_counter()
    df = result.filter(period="analysis").to_df()
    values = {
        name: {method: float(df[(name, method, "value")].iloc[0]) for method in METHODS} for name in names
    }
    json.dump(
        {
            "version": nannyml.__version__,
            "pandas": pd.__version__,
            "python": sys.version.split()[0],
            "methods": METHODS,
            "chunk_number": 1,
            "phases_s": {"import": t1 - t0, "read": t2 - t1, "fit": t3 - t2, "calculate": t4 - t3},
            "values": values,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
