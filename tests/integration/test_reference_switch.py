"""A reference replaced while the stream runs on a real broker (saved by another process, seen by
the service's ticker): nothing is lost or counted twice, events after the switch are folded on the
new bins, and each range is compared with the reference its panes were folded on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from driftline import query
from driftline.ingest.files import load_event_reference
from driftline.service import Service
from driftline.settings import load_settings
from driftline.simulate import FILE_DROP, SEGMENTS, Traffic, generate
from driftline.storage.codec import reference_id, reference_rows

from .test_stream import START_MS
from .test_warmup import produce_rows

MINUTE = 60_000


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_reference_replaced_mid_stream_loses_nothing(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    generate(Traffic(n=5_000, seed=1)).drop(FILE_DROP).write_parquet(first)
    generate(Traffic(n=5_000, seed=2, drift_at=0.0, drift_features=["plan"])).drop(FILE_DROP).write_parquet(
        second
    )
    settings = load_settings(
        store=f"chdb://{tmp_path / 'store'}",
        bootstrap=kafka_bootstrap,
        topics=[topic],
        group="g-switch",
        references={"churn": str(first)},
        segments=list(SEGMENTS),
        pane_ms=MINUTE,
        window_ms=5 * MINUTE,
        lateness_ms=5_000,
        flush_interval_ms=300,
    )
    service = Service(settings)
    store = service.store
    try:
        service.start()
        a = reference_id(service.references["churn"].binning)
        before = generate(Traffic(n=3_000, seed=3, start_ms=START_MS, rate=5.0))  # 10 minutes
        produce_rows(kafka_bootstrap, topic, before)
        wait_for(lambda: sum(store.reference_events("churn", None, None).values()) == 3_000)
        store.save_reference(reference_rows("churn", load_event_reference(second, SEGMENTS), str(second)))
        wait_for(lambda: reference_id(service.references["churn"].binning) != a)  # the ticker saw it
        b = reference_id(service.references["churn"].binning)
        after = generate(Traffic(n=3_000, seed=4, start_ms=START_MS + 10 * MINUTE, rate=5.0))
        produce_rows(kafka_bootstrap, topic, after)
        wait_for(lambda: sum(store.reference_events("churn", None, None).values()) == 6_000)
        time.sleep(1.0)  # nothing more arrives: a double count would show now
        assert store.reference_events("churn", None, None) == {a: 3_000, b: 3_000}
        ref = service.references["churn"]
        old = query.compare_range(store, ref, "churn", START_MS, START_MS + 10 * MINUTE).report
        new = query.compare_range(store, ref, "churn", START_MS + 10 * MINUTE, START_MS + 20 * MINUTE).report
        assert (old["reference"]["reference_id"], old["n_current"]) == (a, 3_000)
        assert (new["reference"]["reference_id"], new["n_current"]) == (b, 3_000)
        assert old["other_reference_events"] == new["other_reference_events"] == 0
    finally:
        service.stop()
