"""A Kafka consumer group member, as a chain of steps (snuba's consumer strategies are the model):

    KafkaSource -> BatchDecoder -> DeadLetterRouter   (rejected messages)
                        \\-> PaneFolder -> FlushWriter -> WindowEvaluator (own thread) -> on_window

``StreamConsumer`` only wires them and runs the poll loop. Exactly-once into ClickHouse on top of
at-least-once Kafka:
* each partition's folded panes are written with the partition's offset range in ONE insert,
  fenced (see ``Store.write_flush``): an insert whose offsets someone else stored is refused or
  dropped and the partition re-read from the stored offsets;
* offsets are committed to Kafka only after ClickHouse acknowledged, and only after every dead
  letter they cover was acknowledged by the dead-letter topic or spilled to the local file;
* a consumer that restarts resumes after the stored offsets and restores each partition's
  event-time watermark from them, then evaluates every window a predecessor left unevaluated;
* events of a model without a reference are staged in their partition's insert, and folded once
  the process's :class:`~driftline.ingest.warmup.Bootstrapper` fitted one (``ingest/warmup.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, TopicPartition

from driftline import telemetry as prom
from driftline.contract import MAX_EVENT_BYTES
from driftline.detectors.profile import ModelRegistry, ModelSketch
from driftline.ingest.batch import BatchDecoder, Decoded
from driftline.ingest.deadletter import DeadLetterRouter, ensure_dead_letter_topics
from driftline.ingest.evaluate import NEVER, OnWindow, WindowEvaluator
from driftline.ingest.kafka import client_config, connect_admin, log_error
from driftline.ingest.labels import prediction_rows
from driftline.ingest.panes import PaneFolder, PaneKey, WindowSpec
from driftline.ingest.source import KafkaSource, Partition
from driftline.ingest.warmup import Bootstrapper, Staging, warm_up
from driftline.storage.errors import StoreError, Superseded
from driftline.storage.labels import LabelStore, PredictionRow
from driftline.storage.rows import OffsetRange, PaneRow
from driftline.storage.store import Store

log = logging.getLogger("driftline.consumer")


@dataclass
class ConsumerConfig:
    bootstrap: str
    topics: list[str]
    group: str
    windows: WindowSpec = field(default_factory=WindowSpec)
    dlq_suffix: str = ".dlq"
    dlq_spill: Path = Path("dead-letters.jsonl")  # where refused dead letters go
    batch_size: int = 5000
    flush_interval_s: float = 5.0
    max_pending_events: int = 500_000
    max_message_bytes: int = MAX_EVENT_BYTES
    max_future_ms: int = 86_400_000  # events stamped further ahead of the wall clock are rejected
    instance_id: str | None = None  # static membership: a restarted member gets its partitions back
    session_timeout_ms: int = 10_000
    kafka: dict[str, object] = field(default_factory=dict)  # librdkafka properties for every client
    keep_predictions_ms: int | None = None  # a label topic is joined: keep predictions this long


def ensure_topics(config: ConsumerConfig, more: Sequence[str] = ()) -> None:
    """Reach the cluster and create the dead-letter topics that are missing. Raises
    :class:`~driftline.ingest.kafka.KafkaUnavailable` at once for bad credentials or certificates:
    call it before creating the members, whose clients would otherwise log the failure too."""
    admin = connect_admin(client_config(config.bootstrap, config.kafka))
    ensure_dead_letter_topics(admin, [*config.topics, *more], config.dlq_suffix)


def _export_lag(stats_json: str) -> None:
    """librdkafka statistics -> per-partition consumer lag gauge."""
    stats = orjson.loads(stats_json)
    for topic, t in stats.get("topics", {}).items():
        for partition, p in t.get("partitions", {}).items():
            lag = p.get("consumer_lag", -1)
            if partition != "-1" and lag >= 0:
                prom.CONSUMER_LAG.labels(topic, partition).set(lag)


@dataclass
class _Range:
    start: int
    end: int


class FlushWriter:
    """Flush then commit. A partition's taken rows are kept until acknowledged, so a retry after
    a store failure writes the same rows with the same token."""

    def __init__(
        self, store: Store, group: str, folder: PaneFolder, keep_predictions_ms: int | None = None
    ) -> None:
        self.store = store
        self.group = group
        self.folder = folder
        self.keep_predictions_ms = keep_predictions_ms
        # predictions read and not yet stored, per partition: written (an idempotent upsert) before
        # the partition's pane rows, so every prediction whose offsets are stored can be joined
        self.predictions: dict[Partition, list[PredictionRow]] = defaultdict(list)
        self.ranges: dict[Partition, _Range] = {}  # read and folded, not yet stored
        # rows that are not the folder's for a partition's next flush (staged events, drains)
        self.extra: dict[Partition, tuple[list[PaneRow], list[PaneKey]]] = {}
        self._taken: dict[Partition, tuple[list[PaneRow], list[PaneKey], OffsetRange]] = {}
        # what a write that failed part-way did store, reported by the next one that completes
        self._panes: list[PaneKey] = []
        self._superseded: list[Partition] = []
        self._stored: list[OffsetRange] = []

    def note(self, decoded: Decoded) -> None:
        for key, (first, last) in decoded.ranges.items():
            r = self.ranges.get(key)
            if r is None:
                self.ranges[key] = _Range(first, last)
            else:
                r.end = last

    def write(self) -> tuple[list[PaneKey], list[Partition], list[OffsetRange]]:
        """Store every partition's panes. Returns (panes stored, partitions superseded, offsets
        stored), including those of an earlier call that failed part-way; raises StoreError after
        storing what it could (the rest is retried as taken)."""
        for key in sorted(self.ranges):
            if key not in self._taken:
                rows, keys = self.folder.take_rows(key)
                more_rows, more_keys = self.extra.pop(key, ([], []))
                rows, keys = rows + more_rows, keys + more_keys
                r = self.ranges[key]
                mark = self.folder.watermark.max_event(key) or 0
                self._taken[key] = (rows, keys, OffsetRange(key[0], key[1], r.start, r.end, mark))
            rows, keys, offsets = self._taken[key]
            if self.predictions.get(key) and self.keep_predictions_ms:
                LabelStore(self.store).write_predictions(self.predictions[key], self.keep_predictions_ms)
                del self.predictions[key]
            try:
                with prom.STORE_WRITE_SECONDS.time():
                    self.store.write_flush(self.group, rows, offsets)
            except Superseded as exc:
                log.warning("flush of %s[%d] dropped: %s", key[0], key[1], exc)
                self._superseded.append(key)
            else:
                prom.PANES_FLUSHED.inc(len(rows))
                self._stored.append(offsets)
                self._panes += keys
            self.ranges.pop(key)
            self._taken.pop(key)
        done = self._panes, self._superseded, self._stored
        self._panes, self._superseded, self._stored = [], [], []
        return done

    def drop(self, key: Partition | None = None) -> None:
        if key is None:
            self.ranges.clear()
            self._taken.clear()
            self.predictions.clear()
            self.extra.clear()
        else:
            self.ranges.pop(key, None)
            self._taken.pop(key, None)
            self.predictions.pop(key, None)
            self.extra.pop(key, None)

    @property
    def holding(self) -> bool:
        """Rows were taken but not acknowledged: nothing new may be folded before they are."""
        return bool(self._taken)


class StreamConsumer:
    def __init__(
        self,
        config: ConsumerConfig,
        store: Store,
        references: dict[str, ModelSketch],
        clock: Callable[[], float] = time.time,
        on_window: OnWindow | None = None,
        name: str = "consumer-0",
        evaluator: WindowEvaluator | None = None,
        models: ModelRegistry | None = None,
        bootstrapper: Bootstrapper | None = None,
    ) -> None:
        """``evaluator``: shared by the members of one process, so each window is computed once,
        when every member has stored its events; by default the member has its own, judging by
        ``models`` (the registered settings; none: the defaults). Events are folded with the
        evaluator's models. ``bootstrapper``: models without a reference warm up (their events
        are staged until it fits one); none: their events are dead-lettered."""
        self.config = config
        self.store = store
        self.references = references
        self.clock = clock
        self.name = name
        self.evaluator = evaluator or WindowEvaluator(
            store, references, config.windows, ModelRegistry() if models is None else models, on_window, name
        )
        self.folder = PaneFolder(references, config.windows, self.evaluator.models)
        self.bootstrapper = bootstrapper
        self.decoder = BatchDecoder(
            references,
            config.max_message_bytes,
            config.max_future_ms,
            clock,
            bootstrapper.refusal if bootstrapper else None,
        )
        self.writer = FlushWriter(store, config.group, self.folder, config.keep_predictions_ms)
        self.staging = Staging() if bootstrapper else None
        self._warmed_at = 0.0
        self._staged_unstored = False  # staged rows are in the flush being written
        self.dlq = DeadLetterRouter(self._client_config(), config.dlq_suffix, config.dlq_spill)
        self.source = KafkaSource(self._consumer_config(), config.windows.idle_ms)
        self.assigned: set[Partition] = set()
        self.stats: dict[str, int] = defaultdict(int)
        self._last_flush = clock()
        self._retry_at = 0.0
        self._failures = 0
        self._stop = threading.Event()
        self._recover: set[Partition] = set()  # re-read from the stored offsets before going on
        self._signalled: int | None = None
        self.first_assignment = threading.Event()

    def _client_config(self) -> dict[str, object]:
        return client_config(self.config.bootstrap, self.config.kafka) | {"error_cb": log_error}

    def _consumer_config(self) -> dict[str, object]:
        c = self.config
        conf: dict[str, object] = {
            "statistics.interval.ms": 5000,
            "stats_cb": _export_lag,
            "group.id": c.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": c.session_timeout_ms,
            "fetch.message.max.bytes": 16 << 20,
            **self._client_config(),
        }
        if c.instance_id:
            conf["group.instance.id"] = c.instance_id
        return conf

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_exit_s: float | None = None) -> None:
        """Consume until ``stop`` is set (or, with ``idle_exit_s``, until nothing arrived for that
        long after the first assignment), then flush and leave."""
        ensure_topics(self.config)
        self._stop = stop
        self.source.subscribe(self.config.topics, self._on_assign, self._on_revoke, self._on_lost)
        self.evaluator.attach()
        last_message: float | None = None
        try:
            while not stop.is_set():
                try:
                    read = self._step()
                except (KafkaException, StoreError):
                    # Never die silently: drop what was not stored and re-read it from the stored offsets.
                    log.exception("consumer step failed; re-reading from the last stored offsets")
                    self.stats["recoveries"] += 1
                    self._recover |= self.assigned
                    read = 0
                    stop.wait(1.0)
                if read:
                    last_message = self.clock()
                elif last_message is None and self.first_assignment.is_set():
                    last_message = self.clock()  # the idle clock starts at the first assignment
                if (
                    idle_exit_s is not None
                    and last_message is not None
                    and not self.source.paused
                    and self.clock() - last_message > idle_exit_s
                ):
                    break
            if not self._recover:  # after a failed step the state may be partial: never store it
                self.flush()
        finally:
            self._signal_watermark()
            self.evaluator.withdraw(self.name, stopping=True)
            self.source.close()  # revokes: a last flush, whose panes the evaluator still gets
            self.dlq.close()
            self.evaluator.detach()
            self.stats["windows_evaluated"] = self.evaluator.evaluated

    def _step(self) -> int:
        """One poll: read, decode, fold; flush when due; returns how many messages were read."""
        if self._recover:
            self._reread(self._recover)
        msgs = self.source.poll(self.config.batch_size, 0.2)
        if msgs and self.writer.holding:
            self._rewind(msgs)  # a flush is being retried: fold nothing new until it lands
        elif msgs:
            self.source.progressed(self._handle(msgs))
        else:
            self.source.progressed({})
        for key in self.assigned:
            self.folder.watermark.set_idle(key, self.source.idle(key))
        if self._due():
            self.flush()
        elif not self.writer.ranges:
            self._signal_watermark()  # nothing unstored: idle partitions may move event time on
        if self.bootstrapper is not None and self.clock() - self._warmed_at >= self.config.flush_interval_s:
            self._warm_up()
        mark = self.folder.watermark.current()
        if mark is not None:
            prom.WATERMARK_LAG.labels(self.name).set(max(0.0, self.clock() - mark / 1000))
        return len(msgs)

    # -- per batch ----------------------------------------------------------------------------

    def _handle(self, msgs: list[Message]) -> dict[Partition, int]:
        """Decode, dead-letter, fold; returns the last offset read per partition."""
        started = time.perf_counter()
        decoded = self.decoder.decode(msgs)
        decode_done = time.perf_counter()
        prom.DECODE_SECONDS.observe(decode_done - started)
        for r in decoded.rejected:
            self.dlq.route(r)
        if decoded.rejected:
            self.stats["rejected"] += len(decoded.rejected)
            prom.EVENTS.labels("", "rejected").inc(len(decoded.rejected))  # unknown ids: unbounded labels
        late_before = self.folder.late_events
        for key, rows in decoded.by_partition.items():
            self.folder.fold_scanned(key, decoded.scanned, rows, decoded.events)
        if decoded.staged and self.staging is not None:
            self._stage(decoded)
        self.writer.note(decoded)
        if self.config.keep_predictions_ms:
            kept = prediction_rows(decoded, decoded.values, self.references, self.config.windows.pane_ms)
            for key, rows in kept.items():
                self.writer.predictions[key] += rows
        self.stats["accepted"] += decoded.accepted
        for model, n in decoded.per_model.items():
            prom.EVENTS.labels(model, "accepted").inc(n)
        if self.folder.late_events > late_before:
            prom.EVENTS.labels("", "late").inc(self.folder.late_events - late_before)
            self.stats["late"] += self.folder.late_events - late_before
        prom.FOLD_SECONDS.observe(time.perf_counter() - decode_done)
        return {key: last for key, (_, last) in decoded.ranges.items()}

    def _stage(self, decoded: Decoded) -> None:
        """Keep the events of models warming up for the partition's next flush; their event time
        moves the partition's watermark as folded events do (a warm-up range ends by it)."""
        assert self.staging is not None
        ts_ms = decoded.scanned.ts_ms
        for key, by_model in decoded.staged.items():
            for model, rows in by_model.items():
                values = [decoded.values[i] for i in rows.tolist()]
                self.staging.stage(key, model, ts_ms[rows], decoded.offsets[rows], values)
            self.folder.watermark.observe(key, max(int(ts_ms[r].max()) for r in by_model.values()))
        self.stats["staged"] += decoded.n_staged
        self.stats["accepted"] += decoded.n_staged
        prom.EVENTS.labels("", "staged").inc(decoded.n_staged)

    def _warm_up(self) -> None:
        """Fit the references of models done warming up, fold the staged events of models that
        have one (event time final for every member ends a warm-up range)."""
        assert self.bootstrapper is not None
        self._warmed_at = self.clock()
        final = self.evaluator.final_ms
        panes = warm_up(self.bootstrapper, self.config.group, None if final == NEVER else final)
        if panes:
            self.evaluator.changed(panes, None)

    def _rewind(self, msgs: list[Message]) -> None:
        """Seek back so these messages are fetched again after the store recovers."""
        first: dict[Partition, int] = {}
        for m in msgs:
            first.setdefault((m.topic() or "", m.partition() or 0), m.offset() or 0)
        for (topic, partition), offset in first.items():
            self.source.seek(topic, partition, offset)

    def _due(self) -> bool:
        if not self.writer.ranges:
            return False
        if self.writer.holding:
            return self.clock() >= self._retry_at
        return (
            self.clock() - self._last_flush >= self.config.flush_interval_s
            or self.folder.pending_events >= self.config.max_pending_events
        )

    # -- flush then commit --------------------------------------------------------------------

    def flush(self) -> bool:
        """Store everything folded so far, then commit its offsets. False if the store refused."""
        if self.staging is not None and not self.writer.holding:
            for key in list(self.staging.unstored):  # staged events go in their partition's insert
                if key in self.writer.ranges:
                    self.writer.extra.setdefault(key, ([], []))[0].extend(self.staging.take(key))
                    self._staged_unstored = True
        if not self.writer.ranges:
            self._last_flush = self.clock()
            return True
        self.dlq.flush()  # acknowledged or spilled: the commit below may cover them
        try:
            panes, superseded, stored = self.writer.write()
        except StoreError as exc:
            prom.STORE_ERRORS.labels("flush").inc()
            self._backoff(exc)
            return False
        self._failures = 0
        if self._staged_unstored and self.bootstrapper is not None:
            self._staged_unstored = False
            self.bootstrapper.staged(self.config.group)
        self.source.commit([(o.topic, o.partition, o.end + 1) for o in stored])
        self._last_flush = self.clock()
        self.stats["flushes"] += 1
        if superseded:
            self.stats["superseded"] += len(superseded)
            self._recover |= set(superseded) & self.assigned
        if self.source.paused:
            self.source.resume()
            log.info("store is back; partitions resumed")
        self.evaluator.changed(panes, None)
        self._signal_watermark()
        return True

    def _signal_watermark(self) -> None:
        """Event time up to the watermark is final; with nothing unstored it is stored too."""
        mark = self.folder.watermark.current()
        if mark is not None and not self.writer.ranges and mark != self._signalled:
            self._signalled = mark
            self.evaluator.changed((), mark, self.name)

    def _backoff(self, exc: Exception) -> None:
        """The store is down: stop fetching (memory stays bounded) and retry with backoff."""
        self._failures += 1
        self.stats["flush_failures"] += 1
        delay = min(30.0, 0.5 * 2 ** min(self._failures, 6))
        self._retry_at = self.clock() + delay
        self.source.pause()
        log.warning("flush failed (%s); partitions paused, retry in %.1fs", exc, delay)

    # -- rebalance and recovery ---------------------------------------------------------------

    def _stored_offsets(self, topic: str) -> dict[int, tuple[int, int]]:
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

    def _reread(self, partitions: set[Partition]) -> None:
        """Drop what was read from these partitions and not stored; seek to after the stored offsets."""
        for key in list(partitions):
            self.folder.discard(key)
            self.writer.drop(key)
            self._forget_staged([key])
        self.source.resume()
        for topic in {t for t, _ in partitions}:
            stored = self._stored_offsets(topic)
            for t, p in partitions:
                if t != topic or (t, p) not in self.assigned:
                    continue
                if p in stored:
                    self.source.seek(t, p, stored[p][0] + 1)
                else:
                    committed = self.source.committed([TopicPartition(t, p)])[0].offset
                    self.source.seek(t, p, committed if committed >= 0 else OFFSET_BEGINNING)
        self._recover -= partitions

    def _forget_staged(self, keys: list[Partition]) -> None:
        """What was staged and not stored is staged again by whoever reads it next."""
        if self.staging is not None:
            self.staging.forget(keys)

    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        stored: dict[str, dict[int, tuple[int, int]]] = {}
        for tp in partitions:
            if tp.topic not in stored:
                stored[tp.topic] = self._stored_offsets(tp.topic)
            last = stored[tp.topic].get(tp.partition)
            key = (tp.topic, tp.partition)
            if last is not None:
                tp.offset = last[0] + 1  # ClickHouse is ahead of (or equal to) the committed offset
                self.folder.watermark.assign(key, last[1])
            else:
                self.folder.watermark.assign(key)
        missing = [tp for tp in partitions if tp.offset < 0]
        if missing:  # the group's commit (or nothing): ask, so the source knows where it stands
            try:
                for tp, c in zip(missing, self.source.committed(missing), strict=True):
                    if c.offset >= 0:
                        tp.offset = c.offset
            except KafkaException as exc:  # the coordinator is loading: the logical offset stands
                log.info("committed offsets not available yet (%s)", exc)
        self.source.assign(partitions)
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self.evaluator.request_catch_up()
        self.first_assignment.set()
        log.info("assigned %s", [(tp.topic, tp.partition, tp.offset) for tp in partitions])

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        if not self.flush():
            self.folder.discard()  # could not store: the next owner re-reads from the stored offsets
            self.writer.drop()
        self._leave(partitions)
        log.info("revoked %s", [(tp.topic, tp.partition) for tp in partitions])

    def _on_lost(self, partitions: list[TopicPartition]) -> None:
        self._leave(partitions)
        log.warning("lost %s; unflushed state dropped", [(tp.topic, tp.partition) for tp in partitions])

    def _leave(self, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.folder.forget_partitions(keys)
        for key in keys:
            self.writer.drop(key)
        self._forget_staged(keys)
        self.source.forget(partitions)
        self.assigned -= set(keys)
        self._recover -= set(keys)
        if not self.assigned:
            self.evaluator.withdraw(self.name)
            self._signalled = None
