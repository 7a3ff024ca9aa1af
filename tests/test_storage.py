"""The Store on embedded chDB (in-process, no network): schema, idempotent writes, codecs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driftline.detectors.profile import Batch, Binning, ModelSketch, drift_report
from driftline.storage.codec import merge_rows, metric_rows, pane_rows, reference_from_rows, reference_rows
from driftline.storage.errors import StoreLockedError, Superseded
from driftline.storage.rows import MetricRow, OffsetRange, PaneRow
from driftline.storage.store import Store

from .test_compare_cli import assert_close


def model_sketch(seed: int, n: int = 2000, ref_seed: int | None = None) -> tuple[ModelSketch, ModelSketch]:
    rng = np.random.default_rng(seed if ref_seed is None else ref_seed)
    ref_cols = {
        "x": rng.normal(size=5000),
        "c": np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 5000)],
    }
    binning = Binning.fit(ref_cols, {"x": "numeric", "c": "categorical"}, 100, 10)
    reference = ModelSketch(binning).update(Batch(5000, dict(ref_cols), latency_ms=rng.lognormal(3, 1, 5000)))
    rng = np.random.default_rng(seed + 10_000)
    cur = Batch(
        n,
        {"x": rng.normal(0.3, 1, n), "c": np.array(["a", "d"], dtype=object)[rng.integers(0, 2, n)]},
        latency_ms=rng.lognormal(3, 1, n),
        segments={"g": np.array(["u", "v"], dtype=object)[rng.integers(0, 2, n)]},
        positive=rng.integers(0, 2, n),
        label=rng.integers(-1, 2, n),
    )
    return reference, ModelSketch(binning).update(cur)


def test_migrations_are_idempotent(store: Store) -> None:
    store.migrate()
    store.migrate()
    assert set(store.tables()) >= {"pane_sketches", "references", "drift_metrics"}


def test_a_retried_flush_is_superseded_not_stored_twice(store: Store) -> None:
    _, cur = model_sketch(1)
    rows = pane_rows("m", "v1", 0, 60_000, False, cur)
    store.write_flush("g", rows, OffsetRange("t", 0, 0, 999, max_event_ms=5_000))
    store.write_flush("g", rows, OffsetRange("t", 1, 5, 1004, max_event_ms=7_000))
    # an attempt whose acknowledgement was lost, retried: refused, nothing added
    with pytest.raises(Superseded):
        store.write_flush("g", rows, OffsetRange("t", 0, 0, 999, max_event_ms=5_000))
    assert len(store.pane_rows("m")) == 2 * len(rows)
    assert store.stored_offsets("g", "t") == {0: (999, 5_000), 1: (1004, 7_000)}
    assert store.stored_offsets("other-group", "t") == {}
    # The next range of a partition, even with identical content, is new data.
    store.write_flush("g", rows, OffsetRange("t", 0, 1000, 1999, max_event_ms=4_000))
    assert len(store.pane_rows("m")) == 3 * len(rows)
    assert store.stored_offsets("g", "t")[0] == (1999, 5_000)  # newest event time never regresses


def test_two_members_racing_from_the_same_offset_store_one_flush(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The member that lost the race learns it: the insert with the same first offset is dropped
    by ClickHouse (same token) and the verification raises, whatever the two ranges' ends."""
    _, cur = model_sketch(11)
    rows = pane_rows("m", "v1", 0, 60_000, False, cur)
    a, b = OffsetRange("t", 0, 100, 199), OffsetRange("t", 0, 100, 149)
    store.write_flush("g", rows, b)
    # a's check ran before b's insert landed (the race): it saw nothing stored ...
    real, calls = store._stored_offsets, []

    def racing(group: str, topic: str) -> dict[int, tuple[int, int]]:
        calls.append(topic)
        return {} if len(calls) == 1 else real(group, topic)

    monkeypatch.setattr(store, "_stored_offsets", racing)
    with pytest.raises(Superseded):  # ... and its insert is dropped as a duplicate of b's token
        store.write_flush("g", rows, a)
    assert len(calls) == 2
    assert store.stored_offsets("g", "t") == {0: (149, 0)}
    assert sum(r.n for r in store.pane_rows("m") if r.kind == "events") == cur.n_events


def test_offsets_are_read_from_the_projection(store: Store) -> None:
    store.write_flush("g", [], OffsetRange("t", 0, 0, 9))
    plan = store._query(
        "EXPLAIN SELECT source_partition, max(offset_end), max(pane_start) FROM driftline.pane_sketches "
        "WHERE kind = 'offset' AND consumer_group = 'g' AND source_topic = 't' GROUP BY source_partition"
    )
    assert any("latest_offsets" in line[0] for line in plan)


def test_catch_up_finds_unevaluated_and_changed_windows(store: Store) -> None:
    from driftline.ingest.evaluate import _stale_windows

    _, cur = model_sketch(12)
    for k, pane in enumerate((0, 60_000, 120_000)):
        store.write_flush(
            "g", pane_rows("m", "v1", pane, 60_000, False, cur), OffsetRange("t", 0, k * 10, k * 10 + 9)
        )
    changes = store.pane_changes(86_400_000)
    assert [c[2] for c in changes] == [0, 60_000, 120_000]
    report = drift_report(model_sketch(12)[0], cur)
    late = max(c[3] for c in changes) + 1_000  # computed after every write
    from datetime import UTC, datetime

    for end in (60_000, 120_000):
        store.write_metrics(
            metric_rows(report, "m", "v1", end - 120_000, end),
            computed_at=datetime.fromtimestamp(late / 1000, UTC),
        )
    computed = store.windows_computed(120_000, -1)
    assert set(computed) == {("m", "v1", 60_000), ("m", "v1", 120_000)}
    # the window ending at 180000 was never computed
    assert _stale_windows(changes, computed, 60_000, 120_000) == {("m", "v1", 180_000)}
    # a pane written after its windows were computed makes them stale again
    changed = [(m, v, p, t + (10_000 if p == 60_000 else 0)) for m, v, p, t in changes]
    changed[1] = (*changed[1][:3], late + 5)
    assert _stale_windows(changed, computed, 60_000, 120_000) == {("m", "v1", 120_000), ("m", "v1", 180_000)}


def test_stored_rows_merge_back_to_the_same_report(store: Store) -> None:
    reference, _ = model_sketch(2)
    store.save_reference(reference_rows("m", reference, "test"))
    ref_back = reference_from_rows(store.references("m"))
    half_a, half_b = model_sketch(2, 1000)[1], model_sketch(3, 1000, ref_seed=2)[1]
    store.write_flush("g", pane_rows("m", "v1", 0, 60_000, False, half_a), OffsetRange("t", 0, 0, 9))
    store.write_flush("g", pane_rows("m", "v1", 60_000, 60_000, True, half_b), OffsetRange("t", 0, 10, 19))
    merged = merge_rows(ref_back.binning, store.pane_rows("m"))
    assert merged.n_events == 2000
    assert_close(drift_report(ref_back, merged), drift_report(reference, half_a.merge(half_b)))
    assert len(store.pane_rows("m", start_ms=60_000)) == len(store.pane_rows("m")) // 2


def test_newest_reference_wins(store: Store) -> None:
    old, _ = model_sketch(4)
    new, _ = model_sketch(5)
    store.save_reference(reference_rows("m", old, "old.parquet"))
    store.save_reference(reference_rows("m", new, "new.parquet"))
    rows = store.references("m")
    assert {r.source for r in rows} == {"new.parquet"}
    assert reference_from_rows(rows).binning.numeric["x"].digest == new.binning.numeric["x"].digest


def test_metrics_rows_replace_on_recompute(store: Store) -> None:
    reference, cur = model_sketch(6)
    report = drift_report(reference, cur)
    rows = metric_rows(report, "m", "v1", 0, 3_600_000)
    assert {r.metric for r in rows} >= {
        "psi",
        "ks",
        "js",
        "wasserstein",
        "null_rate",
        "chi2",
        "latency_p99",
        "demographic_parity_difference",
        "events",
    }
    store.write_metrics(rows)
    store.write_metrics(rows)  # a recomputation of the same window replaces, not duplicates
    got = store.metrics("m", metric="psi", feature="x")
    assert got == [
        MetricRow(
            "m",
            "v1",
            "x",
            0,
            3_600_000,
            "psi",
            report["features"]["x"]["psi"],
            None,
            5000,
            2000,
            "drift" if report["features"]["x"]["drift"] else "ok",
        )
    ]


def test_second_process_gets_a_clear_error(store: Store, tmp_path: Path) -> None:
    code = (
        "from driftline.storage.errors import StoreLockedError\nfrom driftline.storage.store import Store\n"
        f"try:\n    Store.open('chdb://{tmp_path / 'db'}')\n"
        "except StoreLockedError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert f"the chDB store {tmp_path / 'db'} is in use by process" in out
    assert "one process per directory" in out
    with pytest.raises(StoreLockedError):
        Store.open(f"chdb://{tmp_path / 'db'}")


def test_rows_of_another_reference_are_ignored(store: Store) -> None:
    ref_a, cur_a = model_sketch(7)
    ref_b, _ = model_sketch(8)
    store.write_flush("g", pane_rows("m", "", 0, 60_000, False, cur_a), None)
    assert merge_rows(ref_b.binning, store.pane_rows("m")).n_events == 0
    assert merge_rows(ref_a.binning, store.pane_rows("m")).n_events == cur_a.n_events
    assert all(isinstance(r, PaneRow) for r in store.pane_rows("m"))


def test_alert_states_survive_a_restart_with_their_pending_count(store: Store) -> None:
    from driftline.alerting.config import AlertingConfig
    from driftline.alerting.engine import AlertEngine, Observation
    from driftline.storage.alerts import AlertStore

    cfg = AlertingConfig.model_validate(
        {"rules": [{"name": "r", "metric": "psi", "threshold": 0.2, "for": 3}]}
    )

    def window(end: int) -> list[Observation]:
        return [Observation("m", "v", "x", "psi", 0.5, None, end - 60_000, end)]

    first = AlertEngine(cfg, log=AlertStore(store))
    for end in (60_000, 120_000):
        assert first.evaluate(window(end), float(end)) == []
        first.flush_log()
    restarted = AlertEngine(cfg, log=AlertStore(store))
    restarted.restore()
    assert restarted.evaluate(window(120_000), 130.0) == []  # a window seen before the restart
    fired = restarted.evaluate(window(180_000), 180.0)
    assert [(a.status, a.starts_at) for a in fired] == [("firing", 60_000.0)]


def test_cluster_ddl_is_on_cluster_and_replicated() -> None:
    from driftline.storage.migrations import schema_statements

    plain = schema_statements("driftline", 30)
    clustered = schema_statements("driftline", 30, cluster="prod")
    assert len(plain) == len(clustered) >= 8
    for p, c in zip(plain, clustered, strict=True):
        head = p.splitlines()[0]
        if head.startswith("ALTER TABLE"):  # ALTER TABLE db.t ON CLUSTER c ADD ...
            target = " ".join(head.split()[:3])
            assert c.splitlines()[0] == head.replace(target, target + " ON CLUSTER prod", 1)
        else:
            assert c.splitlines()[0] == head + " ON CLUSTER prod"
        engines = [line for line in c.splitlines() if line.startswith("ENGINE")]
        assert all(
            "Replicated" in e and "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'" in e
            for e in engines
        )
        assert "non_replicated_deduplication_window" not in c
    models = next(c for c in clustered if "driftline.models" in c.splitlines()[0])
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', " in models
    assert models.endswith("'{replica}', updated_at)\nORDER BY model_id")
    assert any("non_replicated_deduplication_window = 10000" in p for p in plain)
    assert all("ON CLUSTER" not in p for p in plain)
