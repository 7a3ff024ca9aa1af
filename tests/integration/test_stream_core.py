"""The stream core under the faults that break event time and exactly-once on a real broker:
a stalled process with a lagging partition, kill -9 with windows open and unevaluated, a
dead-letter topic that refuses messages, a member stalled past its session."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.detectors.profile import ModelSketch
from driftline.ingest.consumer import ConsumerConfig, StreamConsumer, ensure_topics
from driftline.simulate import Traffic, events, generate
from driftline.storage.codec import reference_from_rows
from driftline.storage.rows import OffsetRange, PaneRow
from driftline.storage.store import Store

from ..helpers import write_reference
from .test_stream import START_MS, consume_cmd, produce, store_with_reference, stored_counts

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def produce_ordered(bootstrap: str, topic: str, partition: int, traffic: Traffic) -> int:
    """The traffic to one partition, in event-time order."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    n = 0
    for event in events(generate(traffic)):
        p.produce(topic, orjson.dumps(event), partition=partition)
        n += 1
        if n % 10_000 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return n


def committed_total(admin: AdminClient, group: str, topic: str, partitions: int) -> int:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    try:
        result = admin.list_consumer_group_offsets([request])[group].result(timeout=10)
    except Exception:
        return 0
    return sum(max(tp.offset, 0) for tp in result.topic_partitions)


def late_stored(store: Store) -> int:
    return sum(r.n for r in store.pane_rows("churn", kinds=["events"]) if r.late)


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def test_a_stall_longer_than_idle_with_a_lagging_partition_marks_nothing_late(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, admin: AdminClient
) -> None:
    """Partition 0 is hours ahead in event time; partition 1 keeps receiving in-order events while
    the consumer is stopped (SIGSTOP) for 2.5x the idle timeout. A wall-clock idle rule would call
    partition 1 idle after the stall and make its events late; read-to-the-end idleness does not."""
    topic = new_topic(2)
    dsn = f"chdb://{tmp_path / 'store'}"
    store_with_reference(dsn, write_reference(tmp_path / "ref.parquet")).close()
    ahead = produce_ordered(
        kafka_bootstrap, topic, 0, Traffic(n=20_000, seed=3, start_ms=START_MS + 7_200_000)
    )
    behind = 0
    stop_producing = threading.Event()

    def trickle() -> None:  # partition 1: 1,500 events every 0.3 s of wall time, 1 per 100 ms of event time
        nonlocal behind
        k = 0
        while not stop_producing.is_set():
            behind += produce_ordered(
                kafka_bootstrap,
                topic,
                1,
                Traffic(n=1_500, seed=100 + k, start_ms=START_MS + k * 150_000, rate=10),
            )
            k += 1
            time.sleep(0.3)

    producer = threading.Thread(target=trickle)
    producer.start()
    proc = subprocess.Popen(
        consume_cmd(
            kafka_bootstrap,
            topic,
            dsn,
            "g-stall",
            "--idle",
            "2s",
            "--idle-exit",
            "6s",
            "--flush-interval",
            "500ms",
            "--batch-size",
            "2000",
            "--pane",
            "60s",
            "--window",
            "5m",
        ),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while committed_total(admin, "g-stall", topic, 2) < ahead // 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert time.monotonic() < deadline, "the consumer never started committing"
        proc.send_signal(signal.SIGSTOP)
        time.sleep(5.0)  # idle timeout is 2 s
        proc.send_signal(signal.SIGCONT)
        time.sleep(4.0)
    finally:
        stop_producing.set()
        producer.join()
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    totals = orjson.loads(out.strip().splitlines()[-1])
    assert totals["accepted"] == ahead + behind
    assert totals["late"] == 0
    store = Store.open(dsn)
    try:
        assert stored_counts(store)[0] == ahead + behind
        assert late_stored(store) == 0
    finally:
        store.close()


def test_kill_9_with_open_and_unevaluated_windows_leaves_no_final_window_without_metrics(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, admin: AdminClient
) -> None:
    topic = new_topic(2)
    dsn = f"chdb://{tmp_path / 'store'}"
    store_with_reference(dsn, write_reference(tmp_path / "ref.parquet")).close()
    # 84 minutes of event time, one pane = one window = one minute
    valid, _ = produce(kafka_bootstrap, topic, Traffic(n=84 * 3000, seed=9, start_ms=START_MS, rate=50))
    flags = [
        "--pane",
        "60s",
        "--window",
        "60s",
        "--lateness",
        "30s",
        "--idle",
        "2s",
        "--flush-interval",
        "300ms",
        "--batch-size",
        "1000",
    ]
    proc = subprocess.Popen(
        consume_cmd(kafka_bootstrap, topic, dsn, "g-kill", *flags),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while committed_total(admin, "g-kill", topic, 2) < valid.height // 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed_total(admin, "g-kill", topic, 2) < valid.height, "killed too late to test anything"
    final = subprocess.run(
        consume_cmd(kafka_bootstrap, topic, dsn, "g-kill", *flags, "--idle-exit", "6s"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr[-3000:]
    store = Store.open(dsn)
    try:
        assert stored_counts(store)[0] == valid.height
        per_pane: dict[int, int] = {}
        for r in store.pane_rows("churn", kinds=["events"]):
            per_pane[r.pane_start] = per_pane.get(r.pane_start, 0) + r.n
        watermark = int(valid["ts"].max()) - 30_000  # all partitions idle at the end
        final_windows = {p + 60_000 for p in per_pane if p + 60_000 <= watermark}
        metrics = {m.window_end: m.value for m in store.metrics("churn", metric="events")}
    finally:
        store.close()
    assert len(final_windows) >= 80
    missing = sorted(final_windows - set(metrics))
    assert missing == []
    # and each window's metrics count every event of its pane (computed after the last write)
    assert all(metrics[end] == per_pane[end - 60_000] for end in final_windows)


def test_a_dead_letter_topic_that_refuses_messages_spills_them_and_consumption_continues(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, admin: AdminClient
) -> None:
    topic = new_topic(2)
    dlq = topic + ".dlq"
    # the dead-letter topic exists already and refuses anything above 64 bytes, for good
    admin.create_topics([NewTopic(dlq, 1, 1, config={"max.message.bytes": "64"})])[dlq].result(timeout=30)
    valid, bad = produce(
        kafka_bootstrap, topic, Traffic(n=4_000, seed=31, start_ms=START_MS), bad_fraction=0.02
    )
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    spill = tmp_path / "spill.jsonl"
    try:
        refs = {"churn": reference_from_rows(store.references())}
        config = ConsumerConfig(
            kafka_bootstrap,
            [topic],
            "g-spill",
            flush_interval_s=0.5,
            batch_size=500,
            session_timeout_ms=6000,
            dlq_spill=spill,
        )
        started = time.monotonic()
        c = StreamConsumer(config, store, refs)
        c.run(threading.Event(), idle_exit_s=4.0)
        assert time.monotonic() - started < 90, "the consumer was held up by its dead letters"
        assert stored_counts(store)[0] == valid.height == c.stats["accepted"]
    finally:
        store.close()
    lines = [orjson.loads(line) for line in spill.read_bytes().splitlines()]
    assert len(lines) == sum(bad.values()) == c.stats["rejected"] == c.dlq.spilled
    for line in lines:
        assert line["topic"] == dlq and line["headers"]["driftline-source-topic"] == topic
        assert line["headers"]["driftline-error"]
        assert base64.b64decode(line["value"]) is not None
    offsets = {
        (h["driftline-source-partition"], h["driftline-source-offset"]) for h in (x["headers"] for x in lines)
    }
    assert len(offsets) == len(lines)  # each dead letter spilled once


def test_dead_letter_topics_are_as_wide_as_their_source(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, admin: AdminClient
) -> None:
    topic = new_topic(4)
    ensure_topics(ConsumerConfig(kafka_bootstrap, [topic], "g-dlq-shape"))
    md = admin.list_topics(topic + ".dlq", timeout=10).topics[topic + ".dlq"]
    assert len(md.partitions) == 4
    assert {len(p.replicas) for p in md.partitions.values()} == {1}  # the dev broker has one node


class StallingStore:
    """A member whose first flush stalls (longer than its poll interval) before it writes."""

    def __init__(self, store: Store, stall_s: float) -> None:
        self._store, self.stall_s, self.stalled = store, stall_s, threading.Event()

    def write_flush(self, group: str, rows: Sequence[PaneRow], offsets: OffsetRange | None) -> str:
        if not self.stalled.is_set():
            self.stalled.set()
            time.sleep(self.stall_s)
        return self._store.write_flush(group, rows, offsets)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_member_stalled_past_its_session_while_another_takes_over_counts_nothing_twice(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(2)
    valid, _ = produce(kafka_bootstrap, topic, Traffic(n=20_000, seed=41, start_ms=START_MS))
    store = store_with_reference(f"chdb://{tmp_path / 'store'}", write_reference(tmp_path / "ref.parquet"))
    try:
        refs: dict[str, ModelSketch] = {"churn": reference_from_rows(store.references())}
        fast = {"max.poll.interval.ms": "6000"}  # a member that does not poll for 6 s leaves the group
        config = ConsumerConfig(
            kafka_bootstrap,
            [topic],
            "g-stalled",
            flush_interval_s=0.5,
            batch_size=2_000,
            session_timeout_ms=6000,
            kafka=fast,
        )
        stalling = StallingStore(store, stall_s=12.0)
        a = StreamConsumer(config, stalling, refs, name="a")  # type: ignore[arg-type]
        b = StreamConsumer(config, store, refs, name="b")
        stop = threading.Event()
        ta = threading.Thread(target=a.run, args=(stop, 25.0))
        ta.start()
        assert stalling.stalled.wait(60)  # a has read a batch and stalls inside its first flush
        tb = threading.Thread(target=b.run, args=(stop, 25.0))
        tb.start()
        ta.join(timeout=180)
        tb.join(timeout=180)
        assert not ta.is_alive() and not tb.is_alive()
        assert stored_counts(store)[0] == valid.height
        assert a.stats["superseded"] + b.stats["superseded"] >= 1  # the fence refused the loser
        assert a.stats["accepted"] + b.stats["accepted"] > valid.height  # the same events read twice
    finally:
        store.close()
