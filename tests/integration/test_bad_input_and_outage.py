"""Bad input never stops the consumer; a store outage pauses it without losing anything."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from driftline.ingest.consumer import ConsumerConfig, StreamConsumer
from driftline.simulate import Traffic, events, generate
from driftline.storage.codec import reference_from_rows
from driftline.storage.errors import StoreError
from driftline.storage.rows import OffsetRange, PaneRow
from driftline.storage.store import Store

from .test_stream import START_MS, dead_letters, produce, store_with_reference, stored_counts, write_reference

HUGE = b'{"event_id":"' + b"x" * (10 << 20) + b'"}'


def test_every_kind_of_bad_input_is_dead_lettered_with_its_reason(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(2)
    good = [orjson.dumps(e) for e in events(generate(Traffic(n=50, seed=5, start_ms=START_MS)))]
    bad: list[tuple[bytes | None, str]] = [
        (good[0][:40], "$: not valid JSON"),
        (good[1].replace(b'"prediction":', b'"prediction":NaN,"p":', 1), "$: not valid JSON"),
        (
            good[2].replace(b'"prediction":', b'"prediction":1e999,"p":', 1),
            "$: not valid JSON",  # orjson refuses numbers that overflow a double
        ),
        (
            good[3].replace(b'"model_id":', b'"model_id":["x"],"m":', 1),
            "model_id: expected a string, got array",
        ),
        (good[4].replace(b'"ts":', b'"ts":"9999-01-01T00:00:00Z","t":', 1), "ts: "),
        (b"\xc3\x28" + good[5], "$: not UTF-8"),
        (HUGE, f"$: message is {len(HUGE)} bytes, above the 1048576-byte limit"),
        (good[6].replace(b'"model_id":"churn"', b'"model_id":"unknown-model"', 1), "model_id: no reference"),
        (None, "$: empty message"),
        (b"[]", "$: expected a JSON object, got array"),
    ]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 16 << 20})
    for i, raw in enumerate(good[10:]):
        producer.produce(topic, value=raw, key=str(i).encode())
    for raw, _ in bad:
        producer.produce(topic, value=raw, key=b"bad")
    assert producer.flush(30) == 0
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    try:
        config = ConsumerConfig(
            kafka_bootstrap, [topic], "g-bad", flush_interval_s=1.0, session_timeout_ms=6000
        )
        c = StreamConsumer(config, store, {"churn": reference_from_rows(store.references())})
        c.run(threading.Event(), idle_exit_s=4.0)
        assert (c.stats["accepted"], c.stats["rejected"]) == (40, len(bad))
        assert stored_counts(store)[0] == 40
    finally:
        store.close()
    letters = dead_letters(kafka_bootstrap, topic + ".dlq", len(bad))
    reasons = sorted(h["driftline-error"] for h in letters)
    assert len(reasons) == len(bad)
    for _, expected in bad:
        assert any(r.startswith(expected) for r in reasons), (expected, reasons)


def run_member(
    bootstrap: str,
    topic: str,
    group: str,
    store_like: object,
    store: Store,
    idle_exit_s: float = 6.0,
    **config: Any,
) -> StreamConsumer:
    """One group member over ``store_like`` (a wrapper injecting faults into the real store)."""
    cfg = ConsumerConfig(bootstrap, [topic], group, flush_interval_s=0.5, session_timeout_ms=6000, **config)
    member = StreamConsumer(cfg, store_like, {"churn": reference_from_rows(store.references())})  # type: ignore[arg-type]
    member.run(threading.Event(), idle_exit_s=idle_exit_s)
    return member


class FlakyStore:
    """A real store whose first ``failures`` flushes fail, as a ClickHouse outage would."""

    def __init__(self, store: Store, failures: int, offset_failures: int = 0) -> None:
        self._store = store
        self.failures = failures
        self.offset_failures = offset_failures
        self.attempts: list[str] = []

    def stored_offsets(self, group: str, topic: str) -> dict[int, tuple[int, int]]:
        self.attempts.append("offsets")
        if self.offset_failures > 0:
            self.offset_failures -= 1
            raise StoreError("simulated outage while resuming")
        return self._store.stored_offsets(group, topic)

    def write_flush(self, group: str, rows: Sequence[PaneRow], offsets: OffsetRange | None) -> str:
        assert offsets is not None
        self.attempts.append(f"{len(rows)}:{(offsets.partition, offsets.start, offsets.end)}")
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("simulated outage: connection refused")
        return self._store.write_flush(group, rows, offsets)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_store_outage_pauses_and_retries_the_same_flush(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    valid, _ = produce(kafka_bootstrap, topic, Traffic(n=5000, seed=8, start_ms=START_MS))
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    try:
        flaky = FlakyStore(store, failures=3)
        c = run_member(kafka_bootstrap, topic, "g-outage", flaky, store, idle_exit_s=8.0, batch_size=1000)
        assert c.stats["flush_failures"] == 3
        # The retries after the outage wrote exactly what the failed attempt would have.
        flushes = [a for a in flaky.attempts if a != "offsets"]
        assert flushes[0] == flushes[1] == flushes[2] == flushes[3]
        assert stored_counts(store)[0] == valid.height == c.stats["accepted"]
    finally:
        store.close()


def test_store_outage_while_resuming_waits_for_the_stored_offsets(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(2)
    valid, _ = produce(kafka_bootstrap, topic, Traffic(n=2000, seed=12, start_ms=START_MS))
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    try:
        flaky = FlakyStore(store, failures=0, offset_failures=2)
        c = run_member(kafka_bootstrap, topic, "g-resume", flaky, store)
        assert flaky.offset_failures == 0 and flaky.attempts.count("offsets") >= 3
        assert stored_counts(store)[0] == valid.height == c.stats["accepted"]
    finally:
        store.close()


class StaleMemberStore(FlakyStore):
    """Right before the first flush, another member stores the same events with the same offsets,
    as one that took the partition over from a stalled member would."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, failures=0)
        self.fenced = False
        self.flushes = 0

    def write_flush(self, group: str, rows: Sequence[PaneRow], offsets: OffsetRange | None) -> str:
        self.flushes += 1
        if not self.fenced:
            self.fenced = True
            self._store.write_flush(group, rows, offsets)  # the other member, first
        return self._store.write_flush(group, rows, offsets)


def test_a_flush_whose_offsets_are_already_stored_is_dropped_not_double_counted(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(2)
    valid, _ = produce(kafka_bootstrap, topic, Traffic(n=3000, seed=14, start_ms=START_MS))
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    try:
        stale = StaleMemberStore(store)
        c = run_member(kafka_bootstrap, topic, "g-fence", stale, store)
        assert stale.fenced and c.stats["superseded"] == 1
        # the fenced flush was dropped; the member resumed after the stored offsets: counted once
        assert stored_counts(store)[0] == valid.height
    finally:
        store.close()
