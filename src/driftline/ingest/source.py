"""The Kafka side of a consumer: subscription, batches, seek/pause/commit, and partition progress.

Idleness is a broker fact here, not a wall-clock guess: a partition is idle only when this
consumer has read it up to the high watermark the broker last reported *and* nothing arrived
from it for ``idle_ms`` of time spent waiting inside ``consume()``. Time the process spends
elsewhere (a stall, a GC pause, a slow store, SIGSTOP) never ages a partition, and a partition
with unread data is never idle, so a backlog catch-up cannot release the watermark early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger("driftline.source")
Partition = tuple[str, int]
OnPartitions = Callable[[list[TopicPartition]], None]


@dataclass
class PartitionProgress:
    next_offset: int | None = None  # the next offset this consumer will read; None until known
    waited_ms: float = 0.0  # consume() time spent read-up-to-the-end with nothing from it


class KafkaSource:
    def __init__(self, conf: dict[str, object], idle_ms: int) -> None:
        self._consumer = Consumer(conf)
        self.idle_ms = idle_ms
        self.progress: dict[Partition, PartitionProgress] = {}
        self.paused = False
        self._waited_ms = 0.0

    def subscribe(
        self, topics: list[str], on_assign: OnPartitions, on_revoke: OnPartitions, on_lost: OnPartitions
    ) -> None:
        self._consumer.subscribe(
            topics,
            on_assign=lambda _c, tps: on_assign(tps),
            on_revoke=lambda _c, tps: on_revoke(tps),
            on_lost=lambda _c, tps: on_lost(tps),
        )

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Start reading ``partitions`` at their offsets (logical ones use the group's commit)."""
        self._consumer.assign(partitions)
        for tp in partitions:
            start = tp.offset if tp.offset >= 0 else None
            self.progress[(tp.topic, tp.partition)] = PartitionProgress(start)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.progress.pop((tp.topic, tp.partition), None)

    def committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return self._consumer.committed(partitions, timeout=10)

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """One batch of messages (errors other than end-of-partition are logged and dropped).
        The caller reports what the batch held with :meth:`progressed`."""
        started = time.monotonic()
        msgs = self._consumer.consume(max_messages, timeout=timeout_s)
        # A stop of the whole process inside the call is not waiting for data: cap at the timeout.
        self._waited_ms = 0.0 if self.paused else min(time.monotonic() - started, timeout_s) * 1000
        if any(map(Message.error, msgs)):  # rare: only then a Python loop over the batch
            msgs = [m for m in msgs if self._keep(m)]
        return msgs

    def _keep(self, m: Message) -> bool:
        err = m.error()
        if err is None:
            return True
        if err.fatal() or err.code() == KafkaError._AUTHENTICATION:
            raise KafkaException(err)
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error: %s", err)
        return False

    def progressed(self, last_offsets: dict[Partition, int]) -> None:
        """After each poll: the last offset read per partition. A partition that delivered is busy;
        one read to the broker's high watermark ages by the time the poll waited."""
        for key, p in self.progress.items():
            last = last_offsets.get(key)
            if last is not None:
                p.next_offset = last + 1
                p.waited_ms = 0.0
            elif self._read_to_end(key, p):
                p.waited_ms += self._waited_ms
            else:
                p.waited_ms = 0.0

    def _read_to_end(self, key: Partition, p: PartitionProgress) -> bool:
        low, high = self._consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
        if high < 0:
            return False  # the broker has not told us yet
        if p.next_offset is None:
            return low == high  # nothing read yet: only an empty partition is at its end
        return p.next_offset >= high

    def idle(self, key: Partition) -> bool:
        p = self.progress.get(key)
        return p is not None and p.waited_ms >= self.idle_ms

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(topic, partition, offset))
        p = self.progress.get((topic, partition))
        if p is not None:
            p.next_offset = offset if offset >= 0 else None
            p.waited_ms = 0.0

    def pause(self) -> None:
        if not self.paused:
            self._consumer.pause(self._consumer.assignment())
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._consumer.resume(self._consumer.assignment())
            self.paused = False

    def commit(self, offsets: list[tuple[str, int, int]]) -> None:
        """Commit ``(topic, partition, next offset)``; the stored offsets cover a failure here."""
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=False
            )
        except KafkaException as exc:
            log.warning("offset commit failed (%s); the stored offsets cover it", exc)

    def close(self) -> None:
        self._consumer.close()
