"""Time Evidently's DataDriftPreset on the benchmark's data; run inside a venv that has evidently.

Invoked by ``python -m bench.detectors`` with the venv's interpreter (this file imports nothing
of driftline, so it runs where only evidently, pandas and numpy are installed)::

    /tmp/evidently-venv/bin/python bench/evidently_runner.py REF.npy CUR.npy --repeat 3

``REF.npy`` / ``CUR.npy`` hold (rows, features) float64 arrays. Prints one JSON document on
stdout: evidently's version, the import time, and per preset method the median wall time of
DataFrame -> Dataset -> Report.run -> snapshot dict, with each column's drift value.

``python -m bench.compare`` runs it on Parquet files instead, as a whole process (import, reading
and one run of the default preset, no warm-up), like ``driftline compare``::

    /tmp/evidently-venv/bin/python bench/evidently_runner.py R.parquet C.parquet --repeat 0 --methods default

With ``.parquet`` paths the files are read with ``pandas.read_parquet`` and the columns keep
their names; ``--repeat 0`` times the first run alone (``read_s`` is the reading).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")


def _load_api() -> tuple[str, Any]:
    """Return (api name, run function) for whichever Evidently API is installed."""
    import pandas as pd

    try:  # 0.7.x
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        def run_new(ref: Any, cur: Any, names: list[str], method: str | None) -> dict[str, Any]:
            df_ref = pd.DataFrame(ref, columns=names, copy=False)
            df_cur = pd.DataFrame(cur, columns=names, copy=False)
            definition = DataDefinition(numerical_columns=names)
            ds_ref = Dataset.from_pandas(df_ref, data_definition=definition)
            ds_cur = Dataset.from_pandas(df_cur, data_definition=definition)
            report = Report([DataDriftPreset(method=method)])
            snapshot = report.run(current_data=ds_cur, reference_data=ds_ref)
            return snapshot.dict()

        return "evidently>=0.7 (Report, Dataset, DataDefinition; presets.DataDriftPreset)", run_new
    except ImportError:
        pass

    from evidently.metric_preset import DataDriftPreset as LegacyPreset  # 0.4.x
    from evidently.pipeline.column_mapping import ColumnMapping
    from evidently.report import Report as LegacyReport

    def run_old(ref: Any, cur: Any, names: list[str], method: str | None) -> dict[str, Any]:
        df_ref = pd.DataFrame(ref, columns=names, copy=False)
        df_cur = pd.DataFrame(cur, columns=names, copy=False)
        report = LegacyReport(metrics=[LegacyPreset(stattest=method)])
        report.run(
            reference_data=df_ref,
            current_data=df_cur,
            column_mapping=ColumnMapping(numerical_features=names),
        )
        return report.as_dict()

    return "evidently 0.4 (report.Report; metric_preset.DataDriftPreset)", run_old


def _column_values(result: dict[str, Any]) -> dict[str, Any]:
    """Per-column drift values from a 0.7 snapshot dict (method name and value)."""
    out: dict[str, Any] = {}
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            out[config["column"]] = {"method": config.get("method"), "value": metric.get("value")}
        elif config.get("type", "").endswith("DriftedColumnsCount"):
            out["__drifted_columns__"] = metric.get("value")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("ref")
    p.add_argument("cur")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--methods",
        default="default,ks,psi",
        help="comma-separated DataDriftPreset methods; 'default' lets Evidently choose",
    )
    args = p.parse_args()

    import numpy as np

    t0 = time.perf_counter()
    import evidently

    api, run = _load_api()
    import_s = time.perf_counter() - t0

    t = time.perf_counter()
    if args.ref.endswith(".parquet"):
        import pandas as pd

        df_ref, df_cur = pd.read_parquet(args.ref), pd.read_parquet(args.cur)
        names = [str(c) for c in df_ref.columns]
        ref, cur = df_ref.to_numpy(np.float64), df_cur[names].to_numpy(np.float64)
        del df_ref, df_cur
    else:
        ref = np.load(args.ref)
        cur = np.load(args.cur)
        names = [f"f{i:02d}" for i in range(ref.shape[1])]
    read_s = time.perf_counter() - t

    methods: dict[str, Any] = {}
    for name in args.methods.split(","):
        method = None if name == "default" else name
        t = time.perf_counter()
        result = run(ref, cur, names, method)  # warm-up: lazy imports, first-use caches
        first = time.perf_counter() - t
        times = [] if args.repeat else [first]  # --repeat 0: the first run is the one timed
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = run(ref, cur, names, method)
            times.append(time.perf_counter() - t)
        methods[name] = {
            "first_run_s": first,
            "times_s": times,
            "median_s": statistics.median(times),
            "columns": _column_values(result),
        }

    json.dump(
        {
            "version": evidently.__version__,
            "api": api,
            "pandas": __import__("pandas").__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "import_s": import_s,
            "read_s": read_s,
            "rows": int(ref.shape[0]),
            "features": int(ref.shape[1]),
            "repeat": args.repeat,
            "timed": "pandas.DataFrame -> Dataset.from_pandas -> Report([DataDriftPreset]).run"
            " -> snapshot.dict(); .npy load and import excluded",
            "methods": methods,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
