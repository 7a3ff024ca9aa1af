"""A long read never stalls ingest: a 30-day read while HTTP events are being stored delays no
flush by more than a second. The store serialises every call, so a read that held it for the whole
range would hold up every flush behind it; the API refuses ranges above ``max_range_ms`` and every
read (``driftline stats`` has no cap) goes a piece at a time."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from driftline.api.app import create_app
from driftline.contract import MAX_EVENT_BYTES
from driftline.ingest.decode import decode
from driftline.ingest.panes import PaneFolder
from driftline.query import compare_range
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, Traffic, events, generate

DAY_MS = 86_400_000
PANE_MS = 120_000
START_MS = 1_767_225_600_000
DAYS = 30
PER_PANE = 50  # events in every stored pane
PANES = DAYS * DAY_MS // PANE_MS
CURRENT = DAY_MS // PANE_MS  # the last day's panes are built on the current reference


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Service]]:
    """30 days of stored panes of one model (600k rows), every pane a copy of one real pane's rows.
    The reference was replaced a day before the end: older panes were built on the previous one
    (still read, then left out of the merge as not comparable)."""
    root = tmp_path_factory.mktemp("reads")
    ref = root / "ref.parquet"
    generate(Traffic(n=5000, seed=1000)).drop(FILE_DROP).write_parquet(ref)
    settings = load_settings(
        store=f"chdb://{root / 'store'}",
        references={"churn": str(ref)},
        api_keys={"k": ["admin"]},
        pane_ms=PANE_MS,
    )
    service = Service(settings)
    folder = PaneFolder(service.references, service.windows)
    pane = events(generate(Traffic(n=PER_PANE, seed=1, start_ms=START_MS, rate=1.0, model_version="past")))
    folder.fold([decode(orjson.dumps(e), MAX_EVENT_BYTES) for e in pane], "seed")
    rows, _ = folder.take_rows("seed")
    service.store.write_flush("seed", rows, None, token="seed")
    service.store._command(  # the copies, made by ClickHouse itself (fast)
        "INSERT INTO driftline.pane_sketches SELECT kind, model_id, model_version, feature, "
        f"pane_start + k.number * {PANE_MS}, pane_ms, late, n, sketch, "
        f"if(k.number < {PANES - CURRENT}, 'previous-reference', reference_id), consumer_group, "
        "source_topic, source_partition, offset_start, offset_end, flush_id, inserted_at "
        f"FROM driftline.pane_sketches AS p, numbers(1, {PANES - 1}) AS k WHERE p.model_version = 'past'"
    )
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            yield client, service
    finally:
        service.stop()


def during_ingest(service: Service, read: Callable[[], Any]) -> tuple[Any, list[float]]:
    """``read()`` while another thread stores small HTTP batches back to back: its result, and the
    duration of every flush that overlapped it."""
    now = int(time.time() * 1000)
    live = [orjson.dumps(e) for e in events(generate(Traffic(n=2000, seed=2, start_ms=now - 600_000)))]
    batches = [live[i : i + 20] for i in range(0, len(live), 20)]
    flushes: list[tuple[float, float]] = []
    under_way, stop = threading.Event(), threading.Event()

    def ingest() -> None:
        for batch in itertools.cycle(batches):
            if stop.is_set():
                return
            started = time.perf_counter()
            assert service.http_ingest.ingest(batch).accepted == len(batch)
            flushes.append((started, time.perf_counter()))
            if len(flushes) == 3:
                under_way.set()

    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        assert under_way.wait(60), "ingest did not start"
        started = time.perf_counter()
        result = read()
        ended = time.perf_counter()
    finally:
        stop.set()
        writer.join()
    return result, [b - a for a, b in flushes if a < ended and b > started]


def test_a_30_day_api_read_is_refused_and_delays_no_flush(month: tuple[TestClient, Service]) -> None:
    client, service = month
    span = {"from": START_MS, "to": START_MS + DAYS * DAY_MS, "version": "past"}
    r, flushes = during_ingest(
        service,
        lambda: client.get("/v1/models/churn/drift", params=span, headers={"authorization": "Bearer k"}),
    )
    assert r.status_code == 400 and "max_range_ms" in r.json()["detail"]
    assert max(flushes, default=0.0) < 1.0, f"a flush took {max(flushes):.2f} s during the read"


def test_a_30_day_read_delays_no_flush_by_more_than_a_second(month: tuple[TestClient, Service]) -> None:
    _, service = month
    reference = service.references["churn"]
    report, flushes = during_ingest(
        service,
        lambda: (
            compare_range(
                service.store, reference, "churn", START_MS, START_MS + DAYS * DAY_MS, "past"
            ).report
        ),
    )
    assert report["n_current"] == (CURRENT + 1) * PER_PANE  # the first pane is the original
    assert report["range"]["panes"] == PANES
    assert len(flushes) >= 3, "the read overlapped too few flushes to tell"
    assert max(flushes) < 1.0, f"a flush took {max(flushes):.2f} s during the read"
