"""Producer helper for inference services: one JSON event per prediction, keyed by model_id.

    producer = EventProducer("127.0.0.1:9092", "predictions")
    producer.send({"event_id": "...", "model_id": "churn", "ts": ..., "features": {...},
                   "prediction": 0.8})
    producer.flush()

Batches through librdkafka (linger, lz4), idempotent, acks=all; delivery failures are counted
and raised by ``flush()`` so a caller never believes an event was sent when it was not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from driftline.ingest.kafka import client_config


class DeliveryError(RuntimeError):
    pass


class EventProducer:
    def __init__(self, bootstrap: str, topic: str, extra: Mapping[str, Any] | None = None) -> None:
        """``extra``: librdkafka properties (security settings, tuning), over the defaults."""
        self.topic = topic
        self.delivered = 0
        self.errors: list[str] = []
        self._producer = Producer(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1 << 20,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                **client_config(bootstrap, extra or {}),
            }
        )

    def send(self, event: Mapping[str, Any]) -> None:
        self.send_raw(orjson.dumps(event), str(event.get("model_id", "")).encode())

    def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Produce bytes as they are (the simulator uses this for deliberately broken events)."""
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.errors.append(str(err))

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every event to be acknowledged; returns the number delivered so far."""
        left = self._producer.flush(timeout_s)
        if left or self.errors:
            raise DeliveryError(f"{left} events not delivered; errors: {self.errors[:3]}")
        return self.delivered
