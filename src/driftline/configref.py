"""The configuration reference, written from the classes that validate the configuration.

    python -m driftline.configref          # rewrites docs/driftline.yaml and docs/configuration.md

Every key of the annotated ``driftline.yaml`` is a field of :class:`~driftline.settings.Settings`
or of the alerting classes: its comment is the field's description, its default the field's
default; only the example values below are written by hand. ``tests/test_configref.py`` fails
when the checked-in files differ from what this writes, and loads the YAML through the loaders
``driftline serve`` uses.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from driftline.alerting.config import AlertingConfig
from driftline.settings import Settings

WIDTH = 100
YAML_NAME = "driftline.yaml"
DOC_NAME = "configuration.md"
COMMAND = "python -m driftline.configref"

# The sections of the file and the commands that read them.
SECTIONS = [
    ("`service:`", "`driftline serve --config FILE`"),
    ("`kafka:`", "every Kafka client of `serve --config`, `consume --config` and `simulate --config`"),
    (
        "`receivers:` `rules:` `grouping:` `inhibit:` `staleness:`",
        "`serve --config` (unless `service.rules` names another file), `consume --rules`, `replay --rules`",
    ),
]

# Example values where a default says little (everything else shows its default).
SERVICE: dict[str, Any] = {
    "bootstrap": "kafka-1:9092,kafka-2:9092",
    "references": {"churn": "/var/lib/driftline/references/churn.parquet"},
    "segments": ["region", "gender"],
    "api_keys": {
        "change-me-ingest-key": ["ingest"],
        "change-me-dashboard-key": ["read"],
        "change-me-admin-key": ["admin"],
    },
}

# (property, value, comment): librdkafka's properties have no class here to take them from.
KAFKA: list[tuple[str, Any, str]] = [
    ("security.protocol", "SASL_SSL", "PLAINTEXT (librdkafka's default), SSL, SASL_PLAINTEXT or SASL_SSL."),
    ("sasl.mechanism", "SCRAM-SHA-512", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER."),
    ("sasl.username", "driftline", ""),
    (
        "sasl.password",
        "${env:KAFKA_PASSWORD}",
        "Read from the environment at start (${file:/run/secrets/kafka-password} reads a file), so "
        "the secret stays out of this file; printed masked.",
    ),
    (
        "ssl.ca.location",
        "probe",
        "The CA of the brokers' certificates: a PEM file, or probe for the system's CA store. Mutual "
        "TLS adds ssl.certificate.location and ssl.key.location.",
    ),
    (
        "client.rack",
        "eu-west-1a",
        "Fetch from a replica in the same rack or zone, when the brokers set replica.selector.class.",
    ),
    (
        "fetch.queue.backoff.ms",
        100,
        "Any other librdkafka property (fetch tuning, timeouts, ...): here a partition whose local queue "
        "was full is fetched again after 0.1 s instead of 1 s.",
    ),
]

ALERTING: dict[str, Any] = {
    "receivers": [
        {"name": "oncall", "pagerduty": {"routing_key": "${env:PAGERDUTY_ROUTING_KEY}"}},
        {
            "name": "ml-team",
            "slack": {
                "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
                "grafana_url": "https://grafana.example.com",
            },
        },
        {
            "name": "retrain-churn",
            "webhook": {
                "url": "https://airflow.example.com",
                "preset": "airflow",
                "params": {"dag_id": "retrain_churn"},
                "token": "your-airflow-token",
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "cooldown": "24h",
            },
        },
        {
            "name": "events",
            "webhook": {"url": "https://hooks.example.com/driftline", "secret": "whsec_c2VjcmV0LWV4YW1wbGU="},
        },
    ],
    "rules": [
        {
            "name": "feature-psi",
            "model": "churn*",
            "features": "*",
            "metric": "psi",
            "op": ">",
            "threshold": 0.2,
            "for": 2,
            "severity": "critical",
            "labels": {"team": "growth"},
            "annotations": {
                "summary": "PSI of {feature} on {model} is {value:.3f} (> {threshold})",
                "runbook": "https://runbooks.example.com/psi",
            },
            "receivers": ["oncall", "ml-team"],
            "retrain": "retrain-churn",
        },
        {"name": "ks-test", "metric": "ks_p_value", "op": "<", "threshold": 0.001, "receivers": ["events"]},
        {
            "name": "fairness",
            "metric": "disparate_impact",
            "op": "<",
            "threshold": 0.8,
            "severity": "error",
            "receivers": ["ml-team"],
        },
        {"name": "slow", "metric": "latency_p99", "threshold": 250, "receivers": ["ml-team"]},
        {
            "name": "quiet-model",
            "metric": "seconds_since_last_event",
            "threshold": 600,
            "severity": "critical",
            "receivers": ["oncall"],
        },
    ],
}


def render_yaml() -> str:
    """The annotated driftline.yaml."""
    out = _Writer()
    out.comments(
        "",
        "driftline.yaml: every setting of a driftline process, with what it means and its default. "
        f"Written by `{COMMAND}` from the classes that validate it: do not edit by hand.",
    )
    out.blank()
    out.comments(
        "",
        "The service (driftline serve). Environment variables DRIFTLINE_<KEY> win over these "
        '(DRIFTLINE_API_KEYS=\'{"key": ["ingest"]}\': lists and maps as JSON).',
    )
    out.line("service:")
    out.model(Settings.model_construct(**SERVICE), "  ", exclude={"kafka"})
    out.blank()
    out.comments(
        "",
        "librdkafka properties for every Kafka client driftline creates: consumers, the dead-letter "
        "producer, the admin client, the simulator. A value ${env:NAME} is read from the environment, "
        "${file:PATH} from a file. --kafka-config-file and --kafka-config KEY=VALUE add to them.",
    )
    out.line("kafka:")
    for key, value, comment in KAFKA:
        out.comments("  ", comment)
        out.scalar(key, value, "  ")
    out.blank()
    out.comments(
        "",
        "Alerting: read by serve from this file (unless service.rules names another), and by "
        "consume --rules and replay --rules. Without rules, nothing is evaluated. In receivers, "
        "${env:NAME} and ${file:PATH} work as in kafka:, so keys and secrets can stay out of the file.",
    )
    out.model(AlertingConfig.model_validate(ALERTING), "")
    return "\n".join(out.lines) + "\n"


def render_markdown(driftline_yaml: str) -> str:
    """docs/configuration.md: how the file is read, the annotated file, the environment, models."""
    from driftline.api.routers.models import ModelConfig

    registration = {
        name: field.examples[0] if field.examples else _data(field.get_default(call_default_factory=True))
        for name, field in ModelConfig.model_fields.items()
    }
    sections = "\n".join(f"| {names} | {readers} |" for names, readers in SECTIONS)
    env_rows = "\n".join(
        f"| `DRIFTLINE_{name.upper()}` | `{_env_value(name, field)}` |"
        for name, field in Settings.model_fields.items()
    )
    return f"""<!-- written by `{COMMAND}` from the settings classes: do not edit by hand -->

# Configuration reference

One YAML file configures a driftline process. Its sections are read by:

| section | read by |
|---|---|
{sections}

Check a file before deploying it: `driftline config check FILE` validates every section as
`driftline serve` would (one line naming the file, the line and the field, exit code 2, e.g.
`driftline.yaml:14: rules[1].threshold: Input should be a valid number`; librdkafka checks the
`kafka:` properties, certificate files included, without connecting) and prints the effective
settings: the environment applied, the defaults filled in, every secret masked.

```bash
KAFKA_PASSWORD=example PAGERDUTY_ROUTING_KEY=example driftline config check docs/{YAML_NAME}
```

## Every setting

[`{YAML_NAME}`]({YAML_NAME}), next to this page: each key with what it means and its default
(`Default:` where the example differs). Copy it and keep what you need; a key left out takes its
default.

```yaml
{driftline_yaml.rstrip()}
```

## Environment variables

Every `service:` key can be set as `DRIFTLINE_<KEY>` (lists and maps as JSON). The environment
wins over the file, and `serve`'s flags (`--store`, `--bootstrap`, `--topic`, `--host`, `--port`,
`--open`) over both. `DRIFTLINE_KAFKA` replaces the whole `kafka:` section and its values are
taken as written (no `${{env:...}}`); `--kafka-config-file PATH` (a Java-style client.properties)
and then `--kafka-config KEY=VALUE` add to the section and override it.

| variable | e.g. (as a shell takes it) |
|---|---|
{env_rows}

## Models

A model's events are accepted once it has a reference: `service.references` fits one at start
from a file of its training data (columns: the features, `prediction`, `label`, `latency_ms` and
the `service.segments`), `driftline reference build` stores one, and `PUT /v1/models/{{id}}/reference`
uploads one. Who owns a model and how it is judged is registered through the API, not in this
file: `PUT /v1/models/{{id}}` (scope `admin`) with, for example:

```json
{json.dumps(registration, indent=2)}
```

The registration is stored with the sketches and is the one copy of the model's settings: the
stream (Kafka consumers and HTTP ingest) folds its events with its `positive_threshold`,
`positive_class` and `segments` from the next event on, its windows are judged by its `thresholds`
(the `status` of `drift_metrics` that the dashboards show), alert rules on `psi` or `ks` without a
`threshold` compare with them, and the API and `driftline stats` report with them. Its `segments`
(at most `service.segment_attributes`) are the attributes folded for fairness, each with the
`service.segment_values` most frequent values of its reference; without them, the reference's
segment attributes. They are also the segment columns of a reference built or uploaded without
naming any. A model that is not registered gets the defaults shown.
"""


def files() -> dict[str, str]:
    """File name (in docs/) -> content."""
    driftline_yaml = render_yaml()
    return {YAML_NAME: driftline_yaml, DOC_NAME: render_markdown(driftline_yaml)}


class _Writer:
    """YAML with comments, written line by line (PyYAML cannot write comments)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[type] = set()
        self._commented: set[tuple[type, str]] = set()

    def line(self, text: str) -> None:
        self.lines.append(text)

    def blank(self) -> None:
        self.lines.append("")

    def comments(self, indent: str, text: str) -> None:
        if text:
            width = WIDTH - len(indent) - 2
            parts = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
            self.lines += [f"{indent}# {part}" for part in parts]

    def model(self, obj: BaseModel, indent: str, exclude: Collection[str] = ()) -> None:
        """The first object of a class shows every field (one left unset but with an example is
        shown commented out), later ones only the fields they set; a field's first showing has
        its description above it."""
        cls = type(obj)
        first = cls not in self._seen
        self._seen.add(cls)
        for name, field in cls.model_fields.items():
            value = getattr(obj, name)
            shown = name in obj.model_fields_set or (first and value is not None)
            example = first and value is None and bool(field.examples)
            if name in exclude or not (shown or example):
                continue
            key = field.alias or name
            if not indent:
                self.blank()
            if (cls, name) not in self._commented:
                self._commented.add((cls, name))
                self.comments(indent, (field.description or "") + _default_note(field, value, shown))
            if example:
                self.line(f"{indent}# {key}: {_flow(field.examples[0])}")  # type: ignore[index]
            elif isinstance(value, BaseModel):
                self.line(f"{indent}{key}:")
                self.model(value, indent + "  ")
            elif isinstance(value, list | tuple) and value and isinstance(value[0], BaseModel):
                self.line(f"{indent}{key}:")
                for item in value:
                    self.item(item, indent + "  ")
            else:
                self.scalar(key, value, indent)

    def item(self, obj: BaseModel, indent: str) -> None:
        """A list item: its first key gets the dash, the comments above it the dash's column."""
        start = len(self.lines)
        self.model(obj, indent + "  ")
        for i in range(start, len(self.lines)):
            text = self.lines[i].lstrip()
            if text.startswith("#"):
                self.lines[i] = indent + text
            else:
                self.lines[i] = f"{indent}- {text}"
                break

    def scalar(self, key: str, value: Any, indent: str) -> None:
        """A value in flow style, or a map or list in block style when that line would be too long."""
        data = _data(value)
        text = f"{indent}{key}: {_flow(data)}"
        if len(text) <= WIDTH or not isinstance(data, dict | list):
            self.line(text)
            return
        self.line(f"{indent}{key}:")
        if isinstance(data, dict):
            self.lines += [f"{indent}  {_flow(k)}: {_flow(v)}" for k, v in data.items()]
        else:
            self.lines += [f"{indent}  - {_flow(v)}" for v in data]


def _default_note(field: FieldInfo, value: Any, shown: bool) -> str:
    """' Default: X.' when the example shows another value than the default."""
    if field.is_required() or not shown or isinstance(value, BaseModel):
        return ""
    default = field.get_default(call_default_factory=True)
    if value == default or (isinstance(value, list) and value and isinstance(value[0], BaseModel)):
        return ""
    return f" Default: {_flow(_data(default))}."


def _env_value(name: str, field: FieldInfo) -> str:
    """A variable's value as a shell takes it: the example value, else the default."""
    if name == "kafka":
        value: Any = {k: v for k, v, _ in KAFKA[:3]}
    elif name in SERVICE:
        value = SERVICE[name]
    elif field.examples:
        value = field.examples[0]
    else:
        value = field.get_default(call_default_factory=True)
    if isinstance(value, dict | list):
        return f"'{json.dumps(value)}'"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _data(value: Any) -> Any:
    """Plain YAML data: secrets shown (these are examples), tuples as lists, models as dicts."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return _data(value.model_dump(by_alias=True, exclude_none=True))
    if isinstance(value, dict):
        return {k: _data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_data(v) for v in value]
    return value


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...")


def main(argv: list[str] | None = None) -> int:
    docs = Path(argv[0] if argv else "docs")
    docs.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (docs / name).write_text(text)
        print(f"wrote {docs / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
