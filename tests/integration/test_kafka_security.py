"""Secured Kafka: every client driftline creates connects through SASL/SCRAM and TLS listeners.

A broker of its own (``scripts/kafka-dev up --scram ... --ssl-keystore ...``) serves a
SASL_PLAINTEXT listener with SCRAM-SHA-512 users and an SSL listener whose certificate is signed
by a CA made here with the JDK's keytool. The producer (``simulate``), the consumer, the admin
client (dead-letter topic creation) and the dead-letter producer all go through the secured
listener: if any of them got only ``bootstrap.servers`` the run would fail or lose the letters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .conftest import UP_TIMEOUT_S, run_kafka_dev

USER, PASSWORD = "alice", "alice-secret-7"
STORE_PASS = "changeit"


@dataclass(frozen=True)
class SecureBroker:
    plaintext: str
    sasl: str
    ssl: str
    ca_pem: Path


def _keytool(*args: str, cwd: Path) -> None:
    subprocess.run(["keytool", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def make_certificates(d: Path) -> Path:
    """A CA and a broker certificate it signs for 127.0.0.1/localhost; returns the keystore."""
    common = ["-keyalg", "RSA", "-keysize", "2048", "-validity", "2", "-storetype", "PKCS12"]
    _keytool("-genkeypair", "-alias", "ca", "-dname", "CN=driftline-test-ca", "-ext", "bc:c",
             "-keystore", "ca.p12", "-storepass", STORE_PASS, *common, cwd=d)  # fmt: skip
    _keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", STORE_PASS,
             "-file", "ca.pem", cwd=d)  # fmt: skip
    _keytool("-genkeypair", "-alias", "broker", "-dname", "CN=localhost",
             "-keystore", "broker.p12", "-storepass", STORE_PASS, *common, cwd=d)  # fmt: skip
    _keytool("-certreq", "-alias", "broker", "-keystore", "broker.p12", "-storepass", STORE_PASS,
             "-file", "broker.csr", cwd=d)  # fmt: skip
    _keytool("-gencert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", STORE_PASS,
             "-infile", "broker.csr", "-outfile", "broker.pem", "-validity", "2",
             "-ext", "san=ip:127.0.0.1,dns:localhost", cwd=d)  # fmt: skip
    _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem",
             "-keystore", "broker.p12", "-storepass", STORE_PASS, cwd=d)  # fmt: skip
    _keytool("-importcert", "-alias", "broker", "-file", "broker.pem",
             "-keystore", "broker.p12", "-storepass", STORE_PASS, cwd=d)  # fmt: skip
    return d / "broker.p12"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    tls = tmp_path_factory.mktemp("tls")
    keystore = make_certificates(tls)
    state = tmp_path_factory.mktemp("kafka-secure")
    try:
        up = run_kafka_dev(
            "up", "--dir", str(state), "--scram", f"{USER}:{PASSWORD}",
            "--ssl-keystore", f"{keystore}:{STORE_PASS}", timeout=UP_TIMEOUT_S,
        )  # fmt: skip
        lines = dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
        assert up.returncode == 0 and {"BOOTSTRAP", "SASL_BOOTSTRAP", "SSL_BOOTSTRAP"} <= lines.keys(), (
            up.stdout + up.stderr
        )
        yield SecureBroker(
            lines["BOOTSTRAP"], lines["SASL_BOOTSTRAP"], lines["SSL_BOOTSTRAP"], tls / "ca.pem"
        )
    finally:
        run_kafka_dev("down", "--dir", str(state))


def driftline(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def create_topic(bootstrap: str, partitions: int = 2) -> str:
    name = f"sec-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
    return name


def count_messages(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex}"})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in md.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        c.close()


def produce_and_consume(
    broker: SecureBroker, bootstrap: str, kafka_args: list[str], tmp_path: Path, env: dict[str, str]
) -> None:
    topic = create_topic(broker.plaintext)
    ref = tmp_path / "ref.parquet"
    sent = driftline(
        "simulate", "--bootstrap", bootstrap, *kafka_args, "--topic", topic, "--events", "2000",
        "--bad-fraction", "0.02", "--start", "2026-01-01T00:00:00Z", "--reference-out", str(ref), env=env,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    produced = orjson.loads(sent.stdout.strip().splitlines()[-1])
    assert produced["delivered"] == 2000 and produced["malformed"] > 0
    run = driftline(
        "consume", "--bootstrap", bootstrap, *kafka_args, "--topic", topic, "--group", "g-secure",
        "--store", f"chdb://{tmp_path / 'store'}", "--reference", f"churn={ref}", "--idle-exit", "3s",
        env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    totals = orjson.loads(run.stdout.strip().splitlines()[-1])
    assert totals["accepted"] == produced["valid"]
    assert totals["rejected"] == produced["malformed"]
    # the admin client created the dead-letter topic as wide as its source, and the dead-letter
    # producer delivered every rejected message there, through the same secured listener
    md = AdminClient({"bootstrap.servers": broker.plaintext}).list_topics(timeout=10).topics
    assert len(md[topic + ".dlq"].partitions) == 2
    assert count_messages(broker.plaintext, topic + ".dlq") == produced["malformed"]
    assert PASSWORD not in run.stdout + run.stderr + sent.stdout + sent.stderr


def test_every_client_goes_through_the_sasl_scram_listener(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    props = tmp_path / "client.properties"
    props.write_text(
        "# a Kafka client.properties, the password from the environment\n"
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        f"sasl.username={USER}\nsasl.password=${{env:KAFKA_TEST_PASSWORD}}\n"
    )
    env = {"KAFKA_TEST_PASSWORD": PASSWORD}
    produce_and_consume(secure_broker, secure_broker.sasl, ["--kafka-config-file", str(props)], tmp_path, env)


def test_every_client_goes_through_the_tls_listener_with_the_config_file(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    config = tmp_path / "driftline.yaml"
    config.write_text(f"kafka:\n  security.protocol: SSL\n  ssl.ca.location: {secure_broker.ca_pem}\n")
    produce_and_consume(secure_broker, secure_broker.ssl, ["--config", str(config)], tmp_path, {})


def consume_at_start(bootstrap: str, plaintext: str, kafka_args: list[str], tmp_path: Path) -> list[str]:
    """``consume`` that should stop at start: its exit code must be 2, its stderr lines are returned."""
    ref = tmp_path / "ref.parquet"
    assert driftline("simulate", "--out", str(tmp_path / "sim"), "--events", "500").returncode == 0
    (tmp_path / "sim" / "reference.parquet").rename(ref)
    run = driftline(
        "consume", "--bootstrap", bootstrap, "--topic", create_topic(plaintext),
        "--store", f"chdb://{tmp_path / 's'}", "--reference", f"churn={ref}", *kafka_args, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    return run.stderr.strip().splitlines()


def test_wrong_password_is_one_line_at_start_naming_the_listener(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    sasl = ["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=SCRAM-SHA-512", f"sasl.username={USER}"]
    args = [a for kv in [*sasl, "sasl.password=not-the-password"] for a in ("--kafka-config", kv)]
    lines = consume_at_start(secure_broker.sasl, secure_broker.plaintext, args, tmp_path)
    assert len(lines) == 1, lines
    assert secure_broker.sasl in lines[0] and "SASL_PLAINTEXT" in lines[0]
    assert "authentication" in lines[0].lower()
    assert "not-the-password" not in lines[0]


def test_an_untrusted_certificate_is_one_line_at_start(secure_broker: SecureBroker, tmp_path: Path) -> None:
    args = ["--kafka-config", "security.protocol=SSL"]
    lines = consume_at_start(secure_broker.ssl, secure_broker.plaintext, args, tmp_path)
    assert len(lines) == 1 and secure_broker.ssl in lines[0], lines
    assert "certificate" in lines[0].lower() or "ssl" in lines[0].lower()
