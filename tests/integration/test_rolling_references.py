"""The stream's windows against rolling references on a real broker: each window compared with the
previous window, or with the same window some minutes earlier, gives the numbers ``compare``
gives on the two exported ranges folded on the model's reference bins (``--bins-from``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import polars as pl
import pytest

from driftline.cli import main
from driftline.detectors.windows import rolling_range
from driftline.simulate import FILE_DROP, Traffic, generate
from driftline.storage.store import Store

from ..helpers import ROLES, SEGMENTS, write_reference
from .test_stream import START_MS, consume_cmd, store_with_reference
from .test_warmup import produce_rows

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
WINDOW_MS = 120_000
FEATURES = ("f00_normal", "plan", "f01_lognormal")


@pytest.mark.parametrize("against", ["previous", "seasonal:4m"])
def test_rolling_references_equal_compare_on_the_exported_ranges(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    against: str,
) -> None:
    topic = new_topic(1)  # in event-time order: no late event changes a range after its window
    df = generate(Traffic(n=7_200, seed=31, start_ms=START_MS, rate=10.0, drift_at=0.5,
                          drift_features=["f00_normal", "plan"]))  # fmt: skip
    produce_rows(kafka_bootstrap, topic, df)
    ref = write_reference(tmp_path / "ref.parquet")
    dsn = f"chdb://{tmp_path / 'store'}"
    store_with_reference(dsn, ref).close()
    flags = ["--pane", "60s", "--window", "120s", "--lateness", "10s", "--idle", "2s",
             "--segments", SEGMENTS, "--against", against, "--idle-exit", "5s"]  # fmt: skip
    run = subprocess.run(
        consume_cmd(kafka_bootstrap, topic, dsn, f"g-{against}", *flags),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    store = Store.open(dsn)
    try:
        rows = [r for f in FEATURES for r in store.metrics("churn", metric="psi", feature=f)]
        windows = store.metrics("churn", metric="events")
    finally:
        store.close()
    insufficient = {w.window_end for w in windows if w.status == "insufficient"}
    judged = sorted({r.window_end for r in rows} - insufficient)
    assert len(judged) >= 5, "too few windows with a rolling reference to compare"
    # the model's first windows have nothing before them: stored, not judged
    assert min(w.window_end for w in windows) in insufficient
    drifted = 0
    for end in [judged[0], judged[len(judged) // 2], judged[-1]]:
        lo, hi = rolling_range(against, end - WINDOW_MS, end)
        files = []
        for name, (a, b) in (("earlier", (lo, hi)), ("current", (end - WINDOW_MS, end))):
            path = tmp_path / f"{name}-{end}.parquet"
            df.filter((pl.col("ts") >= a) & (pl.col("ts") < b)).drop(FILE_DROP).write_parquet(path)
            files.append(str(path))
        capsys.readouterr()
        assert main(["compare", "--bins-from", str(ref), "--reference", files[0], "--current", files[1],
                     *ROLES, "--json"]) == 0  # fmt: skip
        report = orjson.loads(capsys.readouterr().out)
        for f in FEATURES:
            (stored,) = [r for r in rows if r.window_end == end and r.feature == f]
            assert stored.value == pytest.approx(report["features"][f]["psi"], rel=1e-9, abs=1e-12), (end, f)
            assert (stored.n_ref, stored.n_cur) == (report["n_reference"], report["n_current"])
            drifted += stored.status == "drift"
    # the drift starts mid-stream: a window across the change drifts against the one before it
    assert drifted or against.startswith("seasonal")
