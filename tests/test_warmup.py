"""Warm-up of models without a reference, on the embedded store (no broker): staged rows go in
with their flush, the reference is fitted on the first N events by event time (or on a range once
event time passed it), and the staged events are folded exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from driftline.api.app import create_app
from driftline.cli import main
from driftline.detectors.profile import ModelRegistry, ModelSettings
from driftline.ingest.decode import decode
from driftline.ingest.files import fit_events_reference, load_event_reference
from driftline.ingest.warmup import Bootstrapper
from driftline.query import References
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, SEGMENTS, Traffic, events, generate
from driftline.storage.codec import merge_rows, reference_id
from driftline.storage.rows import OffsetRange
from driftline.storage.store import Store
from driftline.storage.warmup import WarmupStore, pack, staged_row, unpack

START_MS = 1_767_225_600_000
GROUP = "g"


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_packed_messages_come_back_as_they_were(messages: list[bytes]) -> None:
    assert list(unpack(pack(messages))) == messages


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"chdb://{tmp_path / 'store'}")
    yield s
    s.close()


def stage(store: Store, df: pl.DataFrame, partitions: int = 3, chunk: int = 400) -> int:
    """Flush the rows as a consumer would while the model warms up: per partition, chunks of
    staged events stored with their offsets. Returns how many flushes were written."""
    raws = [orjson.dumps(e) for e in events(df)]
    flushes = 0
    for p in range(partitions):
        mine = raws[p::partitions]
        base = store.stored_offsets(GROUP, "t").get(p, (-1, 0))[0] + 1  # after what is stored
        for start in range(0, len(mine), chunk):
            part = mine[start : start + chunk]
            ts = [decode(r, 1 << 20).ts_ms for r in part]
            offsets = (base + start, base + start + len(part) - 1)
            row = staged_row("churn", min(ts), offsets, part)
            store.write_flush(GROUP, [row], OffsetRange("t", p, offsets[0], offsets[1], max(ts)))
            flushes += 1
    return flushes


def wiring(store: Store, models: ModelRegistry, n: int) -> tuple[References, Bootstrapper]:
    refs = References()
    refs.reload(store)
    return refs, Bootstrapper(store, refs, models, lambda: refs.reload(store), n, tuple(SEGMENTS))


def folded(store: Store) -> int:
    return sum(r.n for r in store.pane_rows("churn", kinds=["events"]))


def test_the_reference_is_fitted_on_the_first_n_events_and_every_staged_event_is_folded_once(
    store: Store, tmp_path: Path
) -> None:
    df = generate(Traffic(n=3_000, seed=5, start_ms=START_MS, rate=50))
    models = ModelRegistry()
    refs, boot = wiring(store, models, 2_000)
    stage(store, df.head(1_500))
    assert boot.step(GROUP, None) == [] and "churn" not in refs  # 1,500 of 2,000
    assert WarmupStore(store).staged_counts() == {"churn": 1_500}
    stage(store, df.slice(1_500), chunk=300)  # new offsets: a later flush of each partition
    boot.staged(GROUP)
    panes = boot.step(GROUP, None)  # fitted, and every staged row folded
    assert "churn" in refs and {p[2] for p in panes} == set(range(START_MS, START_MS + 60_000, 60_000))
    # the oracle: the same 2,000 events (by event time) as a file, fitted as `reference build` does
    first = df.sort("ts").head(2_000)
    assert first["ts"][1_999] < df.sort("ts")["ts"][2_000]
    first.drop(FILE_DROP).write_parquet(tmp_path / "first.parquet")
    oracle = load_event_reference(tmp_path / "first.parquet", SEGMENTS)
    assert reference_id(refs["churn"].binning) == reference_id(oracle.binning)
    assert refs["churn"].n_events == 2_000
    for name, sketch in oracle.features.items():
        assert np.array_equal(refs["churn"].features[name].counts, sketch.counts), name
    (version,) = store.reference_versions("churn")
    assert version["source"].startswith("bootstrap: first 2000 events, 2026-01-01T00:00:00")

    assert folded(store) == 3_000
    assert WarmupStore(store).staged_counts() == {}
    boot.staged(GROUP)
    assert boot.step(GROUP, None) == []  # nothing left to fold, nothing fitted again
    whole = merge_rows(refs["churn"].binning, store.pane_rows("churn"))
    assert whole.n_events == 3_000
    assert all(s.n + s.n_missing == 3_000 for s in whole.features.values())
    assert len(store.reference_versions("churn")) == 1


def test_a_warmup_range_waits_for_event_time_to_pass_it(store: Store) -> None:
    df = generate(Traffic(n=2_000, seed=6, start_ms=START_MS, rate=10))  # 200 s of event time
    start, end = START_MS + 50_000, START_MS + 150_000
    models = ModelRegistry()
    models["churn"] = replace(ModelSettings(), warmup_range=(start, end))
    refs, boot = wiring(store, models, 10_000)
    stage(store, df)
    assert boot.step(GROUP, end - 1) == [] and "churn" not in refs  # event time is not past it yet
    boot.staged(GROUP)
    assert boot.step(GROUP, end) and "churn" in refs
    in_range = df.filter((pl.col("ts") >= start) & (pl.col("ts") < end)).height
    assert refs["churn"].n_events == in_range > 0
    (version,) = store.reference_versions("churn")
    assert version["source"] == "bootstrap: events 2026-01-01T00:00:50.000Z .. 2026-01-01T00:02:30.000Z"
    assert folded(store) == 2_000


def test_a_model_with_warmup_off_is_not_staged() -> None:
    models = ModelRegistry()
    models["off"] = replace(ModelSettings(), warmup_events=0)
    models["ranged"] = replace(ModelSettings(), warmup_events=0, warmup_range=(0, 1))
    boot = Bootstrapper(None, {}, models, lambda: None, 10)  # type: ignore[arg-type]
    assert boot.enabled("anything") and not boot.enabled("off") and boot.enabled("ranged")
    assert not Bootstrapper(None, {}, ModelRegistry(), lambda: None, 0).enabled("x")  # type: ignore[arg-type]
    assert boot.refusal("off") == "no reference registered for model 'off'"


def test_only_so_many_models_warm_up_at_once(tmp_path: Path) -> None:
    """A producer sending random model ids must not fill the store: past warmup_max_models, the
    events of one more model are refused with the reason (over HTTP: listed; Kafka: dead-lettered)."""
    boot = Bootstrapper(None, {}, ModelRegistry(), lambda: None, 10, max_models=2)  # type: ignore[arg-type]
    assert boot.refusal("a") is None and boot.refusal("b") is None and boot.refusal("a") is None
    assert "2 models are already warming up (warmup_max_models)" in (boot.refusal("c") or "")
    settings = load_settings(store=f"chdb://{tmp_path / 'store'}", api_keys={"k": ["ingest"]},
                             warmup_max_models=1)  # fmt: skip
    service = Service(settings)
    try:
        with TestClient(create_app(service)) as client:
            first = list(events(generate(Traffic(n=3, seed=1, start_ms=START_MS, model_id="one"))))
            other = list(events(generate(Traffic(n=2, seed=2, start_ms=START_MS, model_id="two"))))
            out = client.post("/v1/events", headers={"authorization": "Bearer k"}, json=first + other).json()
        assert (out["accepted"], out["staged"], out["rejected"]) == (3, 3, 2)
        assert all("warmup_max_models" in e["reason"] for e in out["errors"])
        assert WarmupStore(service.store).staged_counts() == {"one": 3}
    finally:
        service.stop()


def test_events_with_mixed_types_fit_as_a_file_would() -> None:
    evs = [
        decode(orjson.dumps({"event_id": str(i), "model_id": "m", "ts": START_MS + i,
                             "features": {"x": i * 0.5, "code": ["a", 7, True][i % 3], "n": i % 4},
                             "prediction": i % 2, "segments": {"region": ["n", "s"][i % 2]}}), 1 << 20)
        for i in range(300)
    ]  # fmt: skip
    ref = fit_events_reference(evs, ())
    assert ref.binning.kind("x") == "numeric" and ref.binning.kind("n") == "numeric"
    assert ref.binning.kind("code") == "categorical"
    assert set(ref.binning.categorical["code"].categories) == {"a", "7", "true"}
    assert ref.binning.output_kind("prediction") == "categorical"  # integers are classes
    assert set(ref.binning.segments) == {"region"} and ref.n_events == 300


def test_the_api_registers_a_warmup_and_lists_models_warming_up(tmp_path: Path) -> None:
    settings = load_settings(store=f"chdb://{tmp_path / 'store'}", api_keys={"k": ["admin"]})
    service = Service(settings)
    try:
        stage(service.store, generate(Traffic(n=90, seed=7, start_ms=START_MS)))
        with TestClient(create_app(service)) as client:
            h = {"authorization": "Bearer k"}
            (model,) = client.get("/v1/models", headers=h).json()
            assert model["model_id"] == "churn" and model["reference"] is None
            assert model["warmup"] == {"staged_events": 90, "needed_events": 10_000}
            r = client.put("/v1/models/churn", headers=h, json={"warmup": {"events": 50}})
            assert r.status_code == 200 and r.json()["warmup"]["needed_events"] == 50
            assert service.model_settings["churn"].warmup_events == 50
            r = client.put("/v1/models/churn", headers=h, json={"warmup": {"from": "2026-01-01T00:00:00Z"}})
            assert r.status_code == 400 and "from and to go together" in r.text
            backwards = {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
            r = client.put("/v1/models/churn", headers=h, json={"warmup": backwards})
            assert r.status_code == 400 and "from must be before to" in r.text
            ranged = {"from": "2026-01-01T00:00:00Z", "to": 1767229200000}
            r = client.put("/v1/models/churn", headers=h, json={"warmup": ranged})
            assert r.status_code == 200
            assert service.model_settings["churn"].warmup_range == (START_MS, 1_767_229_200_000)
            # the stream's windows against a rolling reference, per model
            r = client.put("/v1/models/churn", headers=h, json={"against": "weekly"})
            assert r.status_code == 400 and "expected previous, trailing:7d or seasonal:1w" in r.text
            assert (
                client.put("/v1/models/churn", headers=h, json={"against": "seasonal:1w"}).status_code == 200
            )
            assert service.model_settings["churn"].against == "seasonal:1w"
    finally:
        service.stop()


def test_pushed_events_of_a_new_model_warm_up_and_count_once(tmp_path: Path) -> None:
    """Over HTTP: staged in the request's insert (a retried request once), fitted and folded by
    the ticker, later events folded at once."""
    settings = load_settings(store=f"chdb://{tmp_path / 'store'}", api_keys={"k": ["ingest"]},
                             warmup_events=300, pane_ms=60_000, window_ms=300_000, lateness_ms=0)  # fmt: skip
    service = Service(settings)
    evs = list(events(generate(Traffic(n=500, seed=8, start_ms=START_MS, rate=5.0))))
    try:
        with TestClient(create_app(service)) as client:
            h = {"authorization": "Bearer k", "idempotency-key": "first"}
            first = client.post("/v1/events", headers=h, json=evs[:200]).json()
            assert first == {"accepted": 200, "rejected": 0, "late": 0, "staged": 200, "errors": []}
            assert client.post("/v1/events", headers=h, json=evs[:200]).json() == first  # a retry
            h["idempotency-key"] = "second"
            assert client.post("/v1/events", headers=h, json=evs[200:450]).json()["staged"] == 250
            service.http_ingest.tick()  # 450 staged: the first 300 fit the reference, all 450 fold
            assert "churn" in service.references
            h["idempotency-key"] = "third"
            assert client.post("/v1/events", headers=h, json=evs[450:]).json()["staged"] == 0
        store = service.store
        assert sum(r.n for r in store.pane_rows("churn", kinds=["events"])) == 500
        assert WarmupStore(store).staged_counts() == {}
        (version,) = store.reference_versions("churn")
        assert version["events"] == 300 and version["source"].startswith("bootstrap: first 300 events")
    finally:
        service.stop()


def test_replay_of_a_new_model_bootstraps_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fraud.ndjson"
    evs = events(generate(Traffic(n=1_200, seed=9, start_ms=START_MS, rate=20.0, model_id="fraud")))
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in evs))
    dsn = f"chdb://{tmp_path / 'store'}"
    assert main(["replay", "--store", dsn, "--file", str(path), "--warmup-events", "1000", "--json"]) == 0
    totals = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert totals["accepted"] == 1_200 and totals["rejected"] == 0
    store = Store.open(dsn)
    try:
        assert sum(r.n for r in store.pane_rows("fraud", kinds=["events"])) == 1_200
        (version,) = store.reference_versions("fraud")
        assert version["events"] == 1_000
        assert WarmupStore(store).staged_counts() == {}
    finally:
        store.close()
    # with warm-up off, the events of a model without a reference are rejected, none stored
    other = tmp_path / "other.ndjson"
    other.write_bytes(path.read_bytes().replace(b'"model_id":"fraud"', b'"model_id":"other"'))
    assert main(["replay", "--store", dsn, "--file", str(other), "--warmup-events", "0", "--json"]) == 0
    refused = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (refused["accepted"], refused["rejected"]) == (0, 1_200)


def test_two_processes_folding_the_same_staged_rows_store_them_once(store: Store) -> None:
    """Each staged row is folded in an insert named by it (and the reference): a second process
    that read the same rows before the first one's markers landed writes the same inserts, which
    ClickHouse drops as duplicates."""
    models = ModelRegistry()
    refs, first = wiring(store, models, 500)
    stage(store, generate(Traffic(n=900, seed=10, start_ms=START_MS, rate=50)), chunk=100)
    stale = WarmupStore(store).chunks(GROUP, "churn")  # read by the second, before the first folds
    first.step(GROUP, None)
    assert folded(store) == 900
    second = Bootstrapper(store, refs, models, lambda: None, 500, tuple(SEGMENTS))
    second.staging.chunks = lambda group, model: stale  # type: ignore[method-assign]
    assert len(second._drain(GROUP, "churn")) > 0  # it did fold and write them again
    assert folded(store) == 900


def test_a_feature_without_values_in_the_first_events_does_not_block_the_fit() -> None:
    evs = [
        decode(orjson.dumps({"event_id": str(i), "model_id": "m", "ts": START_MS + i,
                             "features": {"x": float(i), "never": None}, "prediction": 0.5}), 1 << 20)
        for i in range(100)
    ]  # fmt: skip
    ref = fit_events_reference(evs, ())
    assert ref.binning.features == ["x"] and ref.n_events == 100
