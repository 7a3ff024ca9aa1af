"""Kafka consumer group member: consume -> decode -> fold -> flush to ClickHouse -> commit.

Exactly-once into ClickHouse on top of at-least-once Kafka:
* offsets are committed only after ClickHouse acknowledged the flush that covers them;
* every flush stores, in the same single-part insert, the offset range of each partition it
  covers, so a consumer that crashed between the insert and the commit resumes after the stored
  offsets instead of counting those events twice;
* a retried insert carries the same deduplication token (derived from the offsets) and is
  stored once.
Dead-letter messages are produced and flushed before the commit that covers their offsets; a
crash in between can repeat a dead-letter entry, which its source headers identify.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from driftline import metrics as prom
from driftline.contract import MAX_EVENT_BYTES, InvalidEvent
from driftline.detectors.profile import ModelSketch, Thresholds
from driftline.ingest.decode import AnyEvent, Rejected, decode
from driftline.ingest.evaluate import OnWindow, WindowEvaluator
from driftline.ingest.panes import PaneFolder, WindowSpec
from driftline.storage.store import OffsetRange, PaneRow, Store, StoreError

log = logging.getLogger("driftline.consumer")


@dataclass
class ConsumerConfig:
    bootstrap: str
    topics: list[str]
    group: str
    windows: WindowSpec = field(default_factory=WindowSpec)
    thresholds: Thresholds = field(default_factory=Thresholds)
    dlq_suffix: str = ".dlq"
    batch_size: int = 5000
    flush_interval_s: float = 5.0
    max_pending_events: int = 500_000
    max_message_bytes: int = MAX_EVENT_BYTES
    max_future_ms: int = 86_400_000  # events stamped further ahead of the wall clock are rejected
    instance_id: str | None = None  # static membership: a restarted member gets its partitions back
    session_timeout_ms: int = 10_000
    kafka: dict[str, str] = field(default_factory=dict)


class DeadLetterRouter:
    """Every rejected message goes to ``<source topic><suffix>`` with the reason in its headers.

    A message whose delivery failed is produced again at the next ``flush()``, which raises until
    all are acknowledged, so the commit covering their offsets waits for them.
    """

    def __init__(self, bootstrap: str, suffix: str, extra: dict[str, str] | None = None) -> None:
        self.suffix = suffix
        self.failed: list[tuple[Rejected, str]] = []
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
             "message.max.bytes": 16 << 20, **(extra or {})}
        )
        self.sent = 0

    def route(self, r: Rejected) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            ("driftline-error", r.reason.encode()),
            ("driftline-source-topic", r.topic.encode()),
            ("driftline-source-partition", str(r.partition).encode()),
            ("driftline-source-offset", str(r.offset).encode()),
        ]

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.sent += 1
            else:
                self.failed.append((r, str(err)))

        self._producer.produce(r.topic + self.suffix, value=r.value, key=r.key, headers=headers,
                               on_delivery=delivered)
        self._producer.poll(0)

    def close(self) -> None:
        """Deliver what is queued (already covered by a commit only if flush() succeeded before)."""
        left = self._producer.flush(5.0)
        if left:
            log.warning("%d dead-letter messages undelivered at shutdown; their offsets were not committed", left)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every routed message is acknowledged; raise (and re-queue) if any was not."""
        left = self._producer.flush(timeout_s)
        if self.failed:
            retry, self.failed = self.failed, []
            for r, _ in retry:
                self.route(r)
            raise StoreError(f"dead-letter delivery failed, retrying: {[e for _, e in retry][:3]}")
        if left:
            raise StoreError(f"dead-letter delivery timed out ({left} messages still queued)")


def _export_lag(stats_json: str) -> None:
    """librdkafka statistics -> per-partition consumer lag gauge."""
    stats = orjson.loads(stats_json)
    for topic, t in stats.get("topics", {}).items():
        for partition, p in t.get("partitions", {}).items():
            lag = p.get("consumer_lag", -1)
            if partition != "-1" and lag >= 0:
                prom.CONSUMER_LAG.labels(topic, partition).set(lag)


class StreamConsumer:
    def __init__(
        self,
        config: ConsumerConfig,
        store: Store,
        references: dict[str, ModelSketch],
        clock: Callable[[], float] = time.time,
        on_window: OnWindow | None = None,
    ) -> None:
        self.config = config
        self.evaluator = WindowEvaluator(store, references, config.windows, config.thresholds, on_window)
        self.store = store
        self.references = references
        self.clock = clock
        self.folder = PaneFolder(references, config.windows)
        self.dlq = DeadLetterRouter(config.bootstrap, config.dlq_suffix, config.kafka)
        self.ranges: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [first, last]
        self.assigned: set[tuple[str, int]] = set()
        self.stats: dict[str, int] = defaultdict(int)
        self._last_flush = clock()
        self._paused = False
        self._rows_pending: list[PaneRow] = []  # taken from the folder, not yet acknowledged
        self._retry_at = 0.0
        self._failures = 0
        self._stop = threading.Event()
        self._needs_recovery = False
        self._consumer = Consumer(self._kafka_config())

    def _kafka_config(self) -> dict[str, object]:
        c = self.config
        conf: dict[str, object] = {
            "bootstrap.servers": c.bootstrap,
            "statistics.interval.ms": 5000,
            "stats_cb": _export_lag,
            "group.id": c.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": c.session_timeout_ms,
            "fetch.message.max.bytes": 16 << 20,
            **c.kafka,
        }
        if c.instance_id:
            conf["group.instance.id"] = c.instance_id
        return conf

    # -- lifecycle ----------------------------------------------------------------------------

    def ensure_topics(self) -> None:
        """Create the dead-letter topics if missing (source topics are the producers' business)."""
        admin = AdminClient({"bootstrap.servers": self.config.bootstrap})
        existing = admin.list_topics(timeout=10).topics
        new = [NewTopic(t + self.config.dlq_suffix, 1, 1) for t in self.config.topics
               if t + self.config.dlq_suffix not in existing]
        for topic, fut in admin.create_topics(new).items() if new else []:
            try:
                fut.result()
            except Exception as exc:  # created concurrently by another member is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
                log.debug("dead-letter topic %s already exists", topic)

    def run(self, stop: threading.Event, idle_exit_s: float | None = None) -> None:
        """Consume until ``stop`` is set (or nothing arrived for ``idle_exit_s``), then flush and leave."""
        self.ensure_topics()
        self._consumer.subscribe(
            self.config.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        last_message = self.clock()
        self._stop = stop
        try:
            while not stop.is_set():
                try:
                    if self._needs_recovery:  # nothing is consumed until we are back at the stored offsets
                        self._recover()
                        self._needs_recovery = False
                    msgs = self._consumer.consume(self.config.batch_size, timeout=0.2)
                    if msgs:
                        last_message = self.clock()
                        self._handle(msgs)
                    if self._due():
                        self.flush()
                    elif not self.ranges and self.clock() - self._last_flush >= self.config.flush_interval_s:
                        # Nothing pending, but time passes: idle partitions release the watermark.
                        self._last_flush = self.clock()
                        self._evaluate_closed_panes()
                except (KafkaException, StoreError):
                    # Never die silently: drop what was not stored and re-read it from the stored offsets.
                    log.exception("consumer step failed; re-reading from the last stored offsets")
                    self.stats["recoveries"] += 1
                    self._needs_recovery = True
                    stop.wait(1.0)
                if idle_exit_s is not None and self.clock() - last_message > idle_exit_s and not self._paused:
                    break
            if not self._needs_recovery:  # after a failed step the state may be partial: never store it
                self.flush()
        finally:
            self._consumer.close()
            self.dlq.close()

    # -- per batch ----------------------------------------------------------------------------

    def _handle(self, msgs: list[Message]) -> None:
        if self._paused:
            self._rewind(msgs)
            return
        started = time.perf_counter()
        horizon = int(self.clock() * 1000) + self.config.max_future_ms
        by_partition: dict[tuple[str, int], list[AnyEvent]] = defaultdict(list)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err)
                continue
            topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
            r = self.ranges.get((topic, partition))
            if r is None:
                self.ranges[(topic, partition)] = [offset, offset]
            else:
                r[1] = offset
            value = m.value()
            try:
                event = decode(value, self.config.max_message_bytes, horizon)
                if event.model_id not in self.references:
                    raise InvalidEvent("model_id", f"no reference registered for model {event.model_id!r}")
            except InvalidEvent as exc:
                self.dlq.route(Rejected(value or b"", str(exc), topic, partition, offset, m.key()))
                self.stats["rejected"] += 1
                prom.EVENTS.labels("", "rejected").inc()  # unknown ids would blow up cardinality
                continue
            by_partition[(topic, partition)].append(event)
        decoded = time.perf_counter()
        prom.DECODE_SECONDS.observe(decoded - started)
        now_ms = int(self.clock() * 1000)
        late_before = self.folder.late_events
        for key, events in by_partition.items():
            self.folder.fold(events, key, now_ms)
            self.stats["accepted"] += len(events)
            for model, n in Counter(e.model_id for e in events).items():
                prom.EVENTS.labels(model, "accepted").inc(n)
        if self.folder.late_events > late_before:
            prom.EVENTS.labels("", "late").inc(self.folder.late_events - late_before)
        prom.FOLD_SECONDS.observe(time.perf_counter() - decoded)

    def _rewind(self, msgs: list[Message]) -> None:
        """A flush is pending: fold nothing new (its retry must write the same rows, with the same
        token), and seek back so these messages are fetched again after the store recovers."""
        first: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error() is None:
                first.setdefault((m.topic() or "", m.partition() or 0), m.offset() or 0)
        for (topic, partition), offset in first.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def _due(self) -> bool:
        if not self.ranges:
            return False
        if self._paused:
            return self.clock() >= self._retry_at
        return (
            self.clock() - self._last_flush >= self.config.flush_interval_s
            or self.folder.pending_events >= self.config.max_pending_events
        )

    # -- flush then commit --------------------------------------------------------------------

    def flush(self) -> bool:
        """Write everything folded so far, then commit its offsets. False if the store refused."""
        if not self.ranges:
            self._last_flush = self.clock()
            return True
        offsets = [OffsetRange(t, p, a, b) for (t, p), (a, b) in sorted(self.ranges.items())]
        try:
            if self._superseded(offsets):
                # Another member (or our own earlier attempt whose acknowledgement was lost) already
                # stored these offsets: writing would count them twice. Re-read from what is stored.
                log.warning("offsets %s already stored; dropping this flush and resuming after them", offsets)
                self.stats["superseded"] += 1
                self._needs_recovery = True
                return False
            self.dlq.flush()
            rows = self._rows_pending or self.folder.take_rows()
            self._rows_pending = rows  # kept until acknowledged: the retry writes the same rows
            with prom.STORE_WRITE_SECONDS.time():
                self.store.write_flush(self.config.group, rows, offsets)
        except StoreError as exc:
            prom.STORE_ERRORS.labels("flush").inc()
            self._backoff(exc)
            return False
        prom.PANES_FLUSHED.inc(len(rows))
        self._rows_pending = []
        self._failures = 0
        try:
            self._consumer.commit(offsets=[TopicPartition(o.topic, o.partition, o.end + 1) for o in offsets],
                                  asynchronous=False)
        except KafkaException as exc:  # safe: the offsets are stored with the data; the next commit catches up
            log.warning("offset commit failed (%s); the stored offsets cover it", exc)
        self.ranges.clear()
        self._last_flush = self.clock()
        self.stats["flushes"] += 1
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
            log.info("store is back; partitions resumed")
        self._evaluate_closed_panes()
        return True

    def _backoff(self, exc: Exception) -> None:
        """The store is down: stop fetching (memory stays bounded) and retry with backoff."""
        self._failures += 1
        self.stats["flush_failures"] += 1
        delay = min(30.0, 0.5 * 2 ** min(self._failures, 6))
        self._retry_at = self.clock() + delay
        if not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
        log.warning("flush failed (%s); partitions paused, retry in %.1fs", exc, delay)

    def _evaluate_closed_panes(self) -> None:
        pending = self.evaluator.evaluate(self.folder.closed_panes(int(self.clock() * 1000)))
        self.folder.open_panes.update(pending)  # the store failed: evaluated after the next flush
        self.stats["windows_evaluated"] = self.evaluator.evaluated

    # -- rebalance ----------------------------------------------------------------------------

    def _superseded(self, offsets: list[OffsetRange]) -> bool:
        """A fence for a member that stalled past its session: has anyone stored these offsets?"""
        for topic in {o.topic for o in offsets}:
            stored = self.store.stored_offsets(self.config.group, topic)
            if any(stored.get(o.partition, -1) >= o.start for o in offsets if o.topic == topic):
                return True
        return False

    def _stored_offsets(self, topic: str) -> dict[int, int]:
        """The store is the source of truth for where to resume: wait for it rather than guess."""
        delay = 0.5
        while True:
            try:
                return self.store.stored_offsets(self.config.group, topic)
            except StoreError as exc:
                if self._stop.is_set():
                    raise
                log.warning("stored offsets unavailable (%s); retrying in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(30.0, delay * 2)

    def _recover(self) -> None:
        self._drop_unflushed()
        for topic in {t for t, _ in self.assigned}:
            stored = self._stored_offsets(topic)
            for t, p in self.assigned:
                if t == topic and p in stored:
                    self._consumer.seek(TopicPartition(t, p, stored[p] + 1))
                elif t == topic:
                    committed = self._consumer.committed([TopicPartition(t, p)], timeout=10)[0].offset
                    self._consumer.seek(TopicPartition(t, p, committed if committed >= 0 else OFFSET_BEGINNING))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored: dict[str, dict[int, int]] = {}
        for tp in partitions:
            if tp.topic not in stored:
                stored[tp.topic] = self._stored_offsets(tp.topic)
            last = stored[tp.topic].get(tp.partition)
            if last is not None:
                tp.offset = last + 1  # ClickHouse is ahead of (or equal to) the committed offset
        consumer.assign(partitions)
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        now_ms = int(self.clock() * 1000)
        for tp in partitions:
            self.folder.watermark.assign((tp.topic, tp.partition), now_ms)
        log.info("assigned %s", [(tp.topic, tp.partition, tp.offset) for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self.flush():
            # Could not store: drop the state; the next owner re-reads from the stored offsets.
            self._drop_unflushed()
        self.folder.forget_partitions((tp.topic, tp.partition) for tp in partitions)
        self.assigned -= {(tp.topic, tp.partition) for tp in partitions}
        log.info("revoked %s", [(tp.topic, tp.partition) for tp in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop_unflushed()
        self.folder.forget_partitions((tp.topic, tp.partition) for tp in partitions)
        self.assigned -= {(tp.topic, tp.partition) for tp in partitions}
        log.warning("lost %s; unflushed state dropped", [(tp.topic, tp.partition) for tp in partitions])

    def _drop_unflushed(self) -> None:
        self.folder.discard()
        self.ranges.clear()
        self._rows_pending = []
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
