"""Dead letters: every rejected message goes to ``<source topic><suffix>`` with its reason.

A dead letter must never wedge the consumer: a message the topic refuses for good (too large,
not authorised, ...) or that is still undelivered after ``max_attempts`` is spilled to a local
JSON-lines file, fsynced, with the same headers, and consumption goes on. ``flush()`` returns
once every routed message is acknowledged or spilled, so the offset commit after it covers them.
After a spill the topic is given ``down_s`` before it is tried again (meanwhile dead letters go
straight to the file), so a broken topic costs one timeout, not one per batch.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from driftline import telemetry as prom
from driftline.ingest.decode import Rejected

log = logging.getLogger("driftline.deadletter")


@dataclass
class _Pending:
    letter: Rejected
    attempts: int = 1
    error: str = ""


@dataclass
class DeadLetterRouter:
    producer_conf: dict[str, object]
    suffix: str
    spill_path: Path
    max_attempts: int = 3
    delivery_timeout_s: float = 10.0
    down_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    sent: int = 0
    spilled: int = 0
    _failed: list[_Pending] = field(default_factory=list)
    _spill: list[tuple[Rejected, str]] = field(default_factory=list)
    _down_until: float = 0.0

    def __post_init__(self) -> None:
        self._producer = Producer(
            {
                "enable.idempotence": True,
                "linger.ms": 20,
                "message.max.bytes": 16 << 20,
                **self.producer_conf,
                "message.timeout.ms": int(self.delivery_timeout_s * 1000),  # bounds each attempt
            }
        )

    def route(self, letter: Rejected) -> None:
        if self.clock() < self._down_until:
            self._spill.append((letter, "dead-letter topic unavailable (recent failures)"))
            return
        self._produce(_Pending(letter))

    def _produce(self, item: _Pending) -> None:
        r = item.letter
        headers: list[tuple[str, str | bytes | None]] = [
            ("driftline-error", r.reason.encode()),
            ("driftline-source-topic", r.topic.encode()),
            ("driftline-source-partition", str(r.partition).encode()),
            ("driftline-source-offset", str(r.offset).encode()),
        ]

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.sent += 1
                prom.DEAD_LETTERS.labels("topic").inc()
                return
            item.error = str(err)
            if err.retriable() and item.attempts < self.max_attempts:
                self._failed.append(item)
            else:
                self._spill.append((r, item.error))

        try:
            self._producer.produce(
                r.topic + self.suffix, value=r.value, key=r.key, headers=headers, on_delivery=delivered
            )
        except (BufferError, ValueError) as exc:  # local queue full, or refused before sending
            self._spill.append((r, f"not produced: {exc}"))
        self._producer.poll(0)

    def flush(self) -> None:
        """Return once every routed message is acknowledged by the topic or spilled to the file."""
        while True:
            left = self._producer.flush(self.delivery_timeout_s * 2)
            if left:  # message.timeout.ms fires every callback before this; be safe anyway
                log.warning("%d dead letters still queued after their delivery timeout", left)
                continue
            if not self._failed:
                break
            retry, self._failed = self._failed, []
            for item in retry:
                item.attempts += 1
                self._produce(item)
        if self._spill:
            self._write_spill()

    def _write_spill(self) -> None:
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spill_path.open("ab") as f:
            for r, error in self._spill:
                f.write(
                    orjson.dumps(
                        {
                            "topic": r.topic + self.suffix,
                            "delivery_error": error,
                            "headers": {
                                "driftline-error": r.reason,
                                "driftline-source-topic": r.topic,
                                "driftline-source-partition": str(r.partition),
                                "driftline-source-offset": str(r.offset),
                            },
                            "key": None if r.key is None else base64.b64encode(r.key).decode(),
                            "value": base64.b64encode(r.value).decode(),
                        }
                    )
                    + b"\n"
                )
            f.flush()
            os.fsync(f.fileno())
        n = len(self._spill)
        self.spilled += n
        prom.DEAD_LETTERS.labels("spill").inc(n)
        log.error(
            "%d dead letters spilled to %s (last delivery error: %s); consuming on",
            n,
            self.spill_path,
            self._spill[-1][1],
        )
        self._spill = []
        self._down_until = self.clock() + self.down_s

    def close(self) -> None:
        self.flush()


def ensure_dead_letter_topics(admin: AdminClient, topics: list[str], suffix: str) -> None:
    """Create ``<topic><suffix>`` where missing, as wide and as replicated as its source topic."""
    existing = admin.list_topics(timeout=10).topics
    new = []
    for t in topics:
        if t + suffix in existing:
            continue
        source = existing.get(t)
        if source is None or not source.partitions:
            raise RuntimeError(f"source topic {t!r} does not exist on the broker")
        replicas = len(next(iter(source.partitions.values())).replicas)
        new.append(NewTopic(t + suffix, len(source.partitions), max(1, replicas)))
    for topic, fut in admin.create_topics(new).items() if new else []:
        try:
            fut.result()
        except Exception as exc:  # created concurrently by another member is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            log.debug("dead-letter topic %s already exists", topic)
