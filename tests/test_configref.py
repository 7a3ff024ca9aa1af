"""The configuration reference (docs/) is what the settings classes write, and loads as written;
``driftline config check`` validates a file as serve would and prints it with secrets masked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftline import configref
from driftline.alerting import config as alerting
from driftline.settings import MASK, Settings, check_kafka, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CLASSES = (
    alerting.AlertingConfig,
    alerting.ReceiverConfig,
    alerting.PagerDutyConfig,
    alerting.SlackConfig,
    alerting.WebhookConfig,
    alerting.Rule,
    alerting.Grouping,
    alerting.Inhibit,
    alerting.Staleness,
)


@pytest.fixture(autouse=True)
def _no_driftline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the test runner's environment sets must not leak into the settings."""
    for name in [k for k in os.environ if k.startswith("DRIFTLINE_")]:
        monkeypatch.delenv(name)


def driftline(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")} | env
    cmd = [sys.executable, "-m", "driftline.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=environ, cwd=ROOT, timeout=120)


def test_the_checked_in_reference_is_what_the_classes_write() -> None:
    for name, text in configref.files().items():
        assert (DOCS / name).read_text() == text, (
            f"docs/{name} is stale: run `{configref.COMMAND}` in the repository and commit the result"
        )


def test_the_page_shows_the_yaml_file_and_it_loads_through_the_service_loaders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (DOCS / configref.DOC_NAME).read_text()
    block = re.search(r"```yaml\n(.*?)```", page, re.DOTALL)
    assert block and block.group(1) == (DOCS / configref.YAML_NAME).read_text()
    path = tmp_path / "driftline.yaml"
    path.write_text(block.group(1))
    monkeypatch.setenv("KAFKA_PASSWORD", "from-the-environment")
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "pd-from-the-environment")
    settings = load_settings(path)
    assert settings.kafka["sasl.password"] == "from-the-environment"
    assert settings.api_keys == configref.SERVICE["api_keys"]
    assert settings.bootstrap == configref.SERVICE["bootstrap"]
    assert settings.store == Settings.model_fields["store"].default
    rules = alerting.load(path)
    assert {r.kind for r in rules.receivers} == {"pagerduty", "slack", "webhook"}
    assert [r.name for r in rules.rules] == [r["name"] for r in configref.ALERTING["rules"]]
    assert rules.grouping == alerting.Grouping() and rules.inhibit == [alerting.Inhibit()]
    check_kafka(path, settings.kafka)  # librdkafka takes every property as written


def test_every_field_of_every_class_is_in_the_reference() -> None:
    text = (DOCS / configref.YAML_NAME).read_text()
    document = yaml.safe_load(text)
    keys = _keys(document) | set(re.findall(r"^\s*# ([a-z_]+): ", text, re.MULTILINE))  # commented examples
    service = text[text.index("\nservice:\n") : text.index("\nkafka:\n")]
    commented = set(re.findall(r"^  # ([a-z_]+): ", service, re.MULTILINE))
    assert set(document["service"]) | commented == set(Settings.model_fields) - {"kafka"}
    assert document["kafka"] == {k: v for k, v, _ in configref.KAFKA}
    for cls in CLASSES:
        missing = {f.alias or name for name, f in cls.model_fields.items()} - keys
        assert not missing, f"{cls.__name__}: {missing}"
    for cls in (Settings, *CLASSES):  # every key is commented: the description lives with the field
        undescribed = [name for name, field in cls.model_fields.items() if not field.description]
        assert not undescribed, f"{cls.__name__}: {undescribed}"


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


SECRETS = {
    "api-key-secret-1": "service.api_keys",
    "store-pw-1": "service.store",
    "kafka-pw-1": "kafka.sasl.password via ${env:}",
    "key-pw-1": "kafka.ssl.key.password",
    "routing-key-1": "pagerduty.routing_key",
    "slack-hook-1": "slack.webhook_url",
    "token-1": "webhook.token",
    "whsec_c2VjcmV0LTE=": "webhook.secret",
}

CONFIG = """\
service:
  store: http://driftline:store-pw-1@clickhouse:8123/driftline
  bootstrap: kafka-1:9092
  api_keys: {api-key-secret-1: [ingest, read]}
kafka:
  security.protocol: SASL_PLAINTEXT
  sasl.mechanism: SCRAM-SHA-512
  sasl.username: driftline
  sasl.password: ${env:KAFKA_PASSWORD}
  ssl.key.password: key-pw-1
receivers:
  - name: oncall
    pagerduty: {routing_key: routing-key-1}
  - name: team
    slack: {webhook_url: https://hooks.slack.com/services/slack-hook-1}
  - name: retrain
    webhook: {url: https://airflow.example.com, preset: airflow, params: {dag_id: d}, token: token-1,
              secret: whsec_c2VjcmV0LTE=}
rules:
  - {name: psi, metric: psi, threshold: 0.2, receivers: [oncall, team], retrain: retrain}
"""


def test_config_check_prints_the_effective_settings_with_every_secret_masked(tmp_path: Path) -> None:
    path = tmp_path / "driftline.yaml"
    path.write_text(CONFIG)
    proc = driftline("config", "check", str(path), KAFKA_PASSWORD="kafka-pw-1", DRIFTLINE_HTTP_PORT="9100")
    assert proc.returncode == 0, proc.stderr
    for secret, where in SECRETS.items():
        assert secret not in proc.stdout + proc.stderr, f"{where} printed"
    shown = yaml.safe_load(proc.stdout)
    assert shown["service"]["http_port"] == 9100  # the environment applied
    assert shown["service"]["store"] == f"http://driftline:{MASK}@clickhouse:8123/driftline"
    assert shown["service"]["api_keys"] == [{"key": MASK, "scopes": ["ingest", "read"]}]
    assert shown["kafka"] == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "driftline",
        "sasl.password": MASK,
        "ssl.key.password": MASK,
    }
    oncall, team, retrain = shown["receivers"]
    assert oncall["pagerduty"]["routing_key"] == team["slack"]["webhook_url"] == MASK
    assert retrain["webhook"]["token"] == retrain["webhook"]["secret"] == MASK
    assert shown["rules"][0]["op"] == ">" and shown["rules"][0]["for"] == 1  # defaults filled in
    assert shown["grouping"] == {"group_wait": 30.0, "group_interval": 300.0, "repeat_interval": 14400.0}


def test_config_check_passes_the_reference_as_the_readme_runs_it() -> None:
    env = {"KAFKA_PASSWORD": "example-pw", "PAGERDUTY_ROUTING_KEY": "example-pd"}
    proc = driftline("config", "check", f"docs/{configref.YAML_NAME}", **env)
    assert proc.returncode == 0, proc.stderr
    assert not {"example-pw", "example-pd", "change-me"} & set(re.findall(r"[\w-]+", proc.stdout))
    assert yaml.safe_load(proc.stdout)["kafka"]["sasl.password"] == MASK


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "service:\n  store: chdb:///x\n  http_port: lots\n",
            ":3: service.http_port: Input should be a valid integer",
        ),
        (
            "service: {api_keys: {k: [read]}}\nrules:\n  - name: r\n    metric: psi\n    threshold: high\n",
            ":5: rules[0].threshold: Input should be a valid number",
        ),
        (
            "service: {api_keys: {k: [read]}}\nkafka:\n  acks: all\n  no.such.property: 1\n",
            ':4: kafka.no.such.property: No such configuration property: "no.such.property"',
        ),
        (
            "service: {api_keys: {k: [read]}}\nkafka:\n  sasl.password: ${env:DRIFTLINE_TEST_UNSET}\n",
            ":3: kafka.sasl.password: environment variable DRIFTLINE_TEST_UNSET is not set",
        ),
        ("service:\n  http_port: 8000\n", ": service.api_keys: none, so serve would refuse to start"),
    ],
    ids=["service", "rules", "kafka-property", "kafka-env", "no-keys"],
)
def test_config_check_names_file_line_and_field_and_exits_2(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "driftline.yaml"
    path.write_text(text)
    proc = driftline("config", "check", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith(f"driftline config: error: {path}{error}"), proc.stderr
