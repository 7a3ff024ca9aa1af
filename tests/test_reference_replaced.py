"""A reference replaced while traffic flows: events from then on are folded on the new bins (also
when another process saved it), windows and ranges before the switch are still compared with the
reference their panes were folded on, and a range across the switch says what it left out."""

from __future__ import annotations

from pathlib import Path

import orjson

from driftline import query
from driftline.ingest.files import load_event_reference
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, SEGMENTS, Traffic, events, generate
from driftline.storage.codec import reference_id, reference_rows
from driftline.storage.store import Store

START_MS = 1_767_225_600_000
MINUTE = 60_000


def raw(traffic: Traffic) -> list[bytes]:
    return [orjson.dumps(e) for e in events(generate(traffic))]


def test_a_reference_replaced_mid_stream_keeps_the_history_comparable(tmp_path: Path) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    generate(Traffic(n=4_000, seed=1)).drop(FILE_DROP).write_parquet(first)
    generate(Traffic(n=4_000, seed=2, drift_at=0.0, drift_features=["f00_normal"])).drop(
        FILE_DROP
    ).write_parquet(second)
    settings = load_settings(
        store=f"chdb://{tmp_path / 'store'}",
        references={"churn": str(first)},
        segments=list(SEGMENTS),
        pane_ms=MINUTE,
        window_ms=2 * MINUTE,
        lateness_ms=0,
    )
    service = Service(settings)
    try:
        a = reference_id(service.references["churn"].binning)
        # ten minutes on reference A
        before = raw(Traffic(n=600, seed=3, start_ms=START_MS, rate=1.0))
        assert service.http_ingest.ingest(before).accepted == 600
        # another process stores reference B (as `reference build` on a shared ClickHouse would)
        b_sketch = load_event_reference(second, SEGMENTS)
        service.store.save_reference(reference_rows("churn", b_sketch, source=str(second)))
        assert reference_id(service.references["churn"].binning) == a  # not seen yet
        service.reload_references()  # the ticker's check
        b = reference_id(service.references["churn"].binning)
        assert b != a
        after = raw(Traffic(n=600, seed=4, start_ms=START_MS + 10 * MINUTE, rate=1.0))
        assert service.http_ingest.ingest(after).accepted == 600
        service.http_ingest.finish()
        store = service.store
        counts = store.reference_events("churn", None, None)
        assert counts == {a: 600, b: 600}  # every event once, each on the bins in effect

        ref = service.references["churn"]
        old = query.compare_range(store, ref, "churn", START_MS, START_MS + 10 * MINUTE).report
        assert old["reference"]["reference_id"] == a and old["reference"]["source"] == str(first)
        assert old["n_current"] == 600 and old["other_reference_events"] == 0
        new = query.compare_range(store, ref, "churn", START_MS + 10 * MINUTE, START_MS + 20 * MINUTE).report
        assert new["reference"]["reference_id"] == b and new["n_current"] == 600
        # across the switch: the majority's reference (B: 11 minutes of 16), the rest said
        across = query.compare_range(
            store, ref, "churn", START_MS + 4 * MINUTE, START_MS + 20 * MINUTE
        ).report
        assert across["reference"]["reference_id"] == b
        assert (across["n_current"], across["other_reference_events"]) == (600, 360)

        # the stream's windows: each compared with the reference its panes were folded on
        windows = {m.window_end: m for m in store.metrics("churn", metric="events")}
        psi = {m.window_end: m for m in store.metrics("churn", metric="psi", feature="f00_normal")}
        early, late = START_MS + 4 * MINUTE, START_MS + 16 * MINUTE
        assert windows[early].n_ref == windows[late].n_ref == 4_000 and windows[early].n_cur == 120
        # reference B is the drifted traffic: the same kind of events drift against it, not against A
        assert psi[early].status == "ok" and psi[late].status == "drift"
    finally:
        service.stop()
    store = Store.open(settings.store)
    try:  # a new process finds the same history
        assert [v["reference_id"] for v in store.reference_versions("churn")] == [a, b]
        assert reference_id(query.load_references(store)["churn"].binning) == b
    finally:
        store.close()


def test_panes_of_a_reference_saved_before_the_history_are_left_out_and_said(tmp_path: Path) -> None:
    """A store written before references were kept by id: the old panes cannot be compared with
    their reference any more; the range says how many events it left out rather than hide them."""
    ref_path = tmp_path / "a.parquet"
    generate(Traffic(n=2_000, seed=1)).drop(FILE_DROP).write_parquet(ref_path)
    settings = load_settings(store=f"chdb://{tmp_path / 'store'}", references={"churn": str(ref_path)},
                             segments=list(SEGMENTS), pane_ms=MINUTE, window_ms=2 * MINUTE)  # fmt: skip
    service = Service(settings)
    try:
        service.http_ingest.ingest(raw(Traffic(n=300, seed=3, start_ms=START_MS, rate=1.0)))
        store = service.store
        store._command(f"TRUNCATE TABLE {store.database}.reference_history")  # as before migration 010
        other = generate(Traffic(n=2_000, seed=9, drift_at=0.0, drift_features=["f01_lognormal"]))
        other.drop(FILE_DROP).write_parquet(tmp_path / "b.parquet")
        sketch = load_event_reference(tmp_path / "b.parquet", SEGMENTS)
        store.save_reference(reference_rows("churn", sketch, source="b"))
        service.reload_references()
        report = query.compare_range(
            store, service.references["churn"], "churn", START_MS, START_MS + 5 * MINUTE
        ).report
        assert report["n_current"] == 0 and report["other_reference_events"] == 300
    finally:
        service.stop()
