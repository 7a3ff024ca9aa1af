"""Round trip through the real broker started by scripts/kafka-dev."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from .conftest import KafkaBroker, run_kafka_dev

T = TypeVar("T")

# Group calls right after the broker starts can fail while __consumer_offsets loads.
_RETRIABLE_GROUP_ERRORS = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._WAIT_COORD,
    KafkaError._TIMED_OUT,
}


def retry_group_call(call: Callable[[], T], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            retriable = isinstance(err, KafkaError) and err.code() in _RETRIABLE_GROUP_ERRORS
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_round_trip_produce_consume_commit(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    n = 1000
    partitions = 3
    topic = new_topic(partitions)
    expected = {f"value-{i}".encode() for i in range(n)}

    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    delivered: Counter[int] = Counter()
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered[msg.partition()] += 1

    for i in range(n):
        producer.produce(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert errors == []
    assert sum(delivered.values()) == n
    assert set(delivered) == set(range(partitions)), f"keys did not spread: {delivered}"

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        received: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(received) < n and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=1.0):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                value = msg.value()
                assert value is not None
                received.append(value)
        # A short extra poll: nothing beyond the n messages may arrive.
        for msg in consumer.consume(num_messages=500, timeout=0.5):
            if msg.error() is None:
                received.append(msg.value())  # type: ignore[arg-type]

        assert len(received) == n, f"received {len(received)} of {n} messages"
        assert set(received) == expected

        retry_group_call(lambda: consumer.commit(asynchronous=False))
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = retry_group_call(lambda: consumer.committed(tps, timeout=10))
        for tp in committed:
            assert tp.error is None, tp.error
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            assert tp.offset == high, (
                f"partition {tp.partition}: committed {tp.offset}, high watermark {high}"
            )
            assert high == delivered[tp.partition]
    finally:
        consumer.close()


def test_kafka_dev_status_reports_session_broker(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    # A directory with no broker: status says so (exit 1) in every setup.
    assert run_kafka_dev("status", "--dir", str(tmp_path / "none")).returncode == 1
    if kafka_broker.state_dir is not None:  # the session broker was started by scripts/kafka-dev
        status = run_kafka_dev("status", "--dir", str(kafka_broker.state_dir))
        assert status.returncode == 0, status.stderr
        assert status.stdout.strip().splitlines()[-1] == f"BOOTSTRAP={kafka_broker.bootstrap}"
