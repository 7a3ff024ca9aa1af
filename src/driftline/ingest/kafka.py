"""What every Kafka client driftline creates shares: its properties, its logs, the start-up check.

One place builds client configurations, so the consumer, the dead-letter producer, the admin
client and the simulator's producer all get the same security settings (a client that got only
``bootstrap.servers`` would fail against a secured listener). librdkafka's own log lines go
through the ``driftline.kafka`` logger instead of straight to stderr.

A wrong SASL password or an untrusted certificate is not an exception in librdkafka: it is an
asynchronous error, and a consumer that ignores it just sees no messages. :func:`connect_admin`
therefore treats those errors as fatal at start and names the listener in one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger("driftline.kafka")
_librdkafka = logging.getLogger("driftline.kafka.librdkafka")

# Errors that waiting will not cure: credentials, certificates, the protocol of the listener.
_FATAL = {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}


class KafkaUnavailable(RuntimeError):
    """Kafka cannot be used with these settings; the message is one line naming the listener."""


def client_config(bootstrap: str, properties: Mapping[str, object]) -> dict[str, object]:
    """A librdkafka configuration: the bootstrap servers, the user's properties, our logger."""
    return {"bootstrap.servers": bootstrap, **properties, "logger": _librdkafka}


def connect_admin(conf: Mapping[str, object], timeout_s: float = 30.0) -> AdminClient:
    """An admin client that has reached the cluster (metadata read), to be kept for its requests.

    Raises :class:`KafkaUnavailable` as soon as librdkafka reports an authentication or TLS error,
    or when no metadata arrived within ``timeout_s`` (with the last error seen).
    """
    errors: list[KafkaError] = []
    # Its failures are raised, one line: librdkafka's own log lines would repeat them.
    admin = AdminClient({**conf, "error_cb": errors.append, "log_level": 0})
    where = f"Kafka at {conf.get('bootstrap.servers')} ({conf.get('security.protocol', 'plaintext')})"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return admin
        except KafkaException as exc:
            last = exc.args[0] if exc.args else exc
        admin.poll(0.1)  # serves error_cb: librdkafka's asynchronous errors
        fatal = [e for e in errors if e.code() in _FATAL]
        if fatal:
            raise KafkaUnavailable(f"{where}: {_one_line(fatal[-1].str())}")
        if time.monotonic() > deadline:
            seen = errors[-1].str() if errors else str(last)
            raise KafkaUnavailable(f"{where}: no answer within {timeout_s:g} s: {_one_line(seen)}")


def log_error(err: KafkaError) -> None:
    """``error_cb`` of long-lived clients: what librdkafka reports asynchronously, logged."""
    if err.code() in _FATAL or err.fatal():
        log.error("kafka: %s", err.str())
    else:
        log.warning("kafka: %s", err.str())


def _one_line(text: str) -> str:
    return " ".join(text.split())
