"""Kafka properties: the kafka: section, properties files, KEY=VALUE pairs, secrets and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from driftline.alerting.config import ConfigError
from driftline.ingest.consumer import ConsumerConfig, StreamConsumer
from driftline.ingest.kafka import client_config
from driftline.settings import MASK, kafka_overrides, load_settings, masked


def test_kafka_section_resolves_env_and_file_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("KAFKA_USER", "alice")
    config = tmp_path / "driftline.yaml"
    config.write_text(
        "service:\n  bootstrap: broker:9093\n"
        "kafka:\n"
        "  security.protocol: SASL_SSL\n"
        "  sasl.username: ${env:KAFKA_USER}\n"
        f"  sasl.password: ${{file:{secret}}}\n"
        "  fetch.wait.max.ms: 50\n"
    )
    s = load_settings(config)
    assert s.kafka == {
        "security.protocol": "SASL_SSL",
        "sasl.username": "alice",
        "sasl.password": "from-a-file",
        "fetch.wait.max.ms": 50,
    }
    assert "from-a-file" not in repr(s)
    assert masked(s.kafka)["sasl.password"] == MASK and masked(s.kafka)["sasl.username"] == "alice"


def test_properties_file_then_pairs_override_the_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "driftline.yaml"
    config.write_text("kafka:\n  client.rack: a\n  sasl.username: bob\n")
    props = tmp_path / "client.properties"
    props.write_text("# comment\n! also a comment\n\nclient.rack = b\nsasl.password=${env:PW}\n")
    monkeypatch.setenv("PW", "s3cret")
    extra = kafka_overrides(str(props), ["client.rack=c", "linger.ms=5"])
    assert extra == {"client.rack": "c", "sasl.password": "s3cret", "linger.ms": "5"}
    assert load_settings(config, extra).kafka == {
        "client.rack": "c",
        "sasl.username": "bob",
        "sasl.password": "s3cret",
        "linger.ms": "5",
    }


def test_environment_json_replaces_the_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "driftline.yaml"
    config.write_text("kafka:\n  client.rack: a\n")
    monkeypatch.setenv("DRIFTLINE_KAFKA", '{"security.protocol": "SSL"}')
    assert load_settings(config).kafka == {"security.protocol": "SSL"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka:\n  client.rack: a\n  sasl.password: ${env:NOT_SET_ANYWHERE}\n",
         ":3: kafka.sasl.password: environment variable NOT_SET_ANYWHERE is not set"),
        ("kafka:\n  ssl.key.password: ${file:/no/such/file}\n",
         ":2: kafka.ssl.key.password: cannot read /no/such/file"),
        ("kafka:\n  - a\n", ":2: kafka: expected a map"),
        ("kafka:\n  client.rack: [a, b]\n", ":2: kafka.client.rack: expected a string, number or boolean"),
    ],
)  # fmt: skip
def test_bad_kafka_section_names_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "driftline.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert str(err.value).startswith(str(config)) and message in str(err.value)


def test_bad_properties_line_and_pair(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text("security.protocol=SSL\nthis line has no equals sign\n")
    with pytest.raises(ConfigError, match=r"client.properties:2: expected key=value"):
        kafka_overrides(str(props), [])
    with pytest.raises(ConfigError, match=r"--kafka-config 'novalue': expected KEY=VALUE"):
        kafka_overrides(None, ["novalue"])


def test_every_client_of_a_consumer_gets_the_properties(tmp_path: Path) -> None:
    """The consumer, the dead-letter producer and the admin client share one configuration."""
    props = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "client.rack": "r1"}
    config = ConsumerConfig(bootstrap="127.0.0.1:1", topics=["t"], group="g", kafka=props)
    consumer = StreamConsumer.__new__(StreamConsumer)  # only the config builders, no clients
    consumer.config = config
    for conf in (consumer._client_config(), consumer._consumer_config(), client_config("127.0.0.1:1", props)):
        assert conf["bootstrap.servers"] == "127.0.0.1:1"
        assert {k: conf[k] for k in props} == props
        assert conf["logger"].name == "driftline.kafka.librdkafka"


def test_cli_reports_a_bad_property_file_in_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "simulate", "--bootstrap", "127.0.0.1:1",
         "--kafka-config-file", str(tmp_path / "missing.properties"), "--events", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    missing = tmp_path / "missing.properties"
    assert (
        run.stderr.strip() == f"driftline simulate: error: {missing}: cannot read: No such file or directory"
    )
