"""Service settings: built once at an entry point and passed down, never read from anywhere else.

Sources, later ones winning: defaults, the ``service:`` section of ``driftline.yaml``, then
environment variables with the ``DRIFTLINE_`` prefix (``DRIFTLINE_STORE``,
``DRIFTLINE_API_KEYS='{"k3y": ["read", "ingest"]}'``, ...). Secrets never appear in logs or
reprs.

The ``kafka:`` section holds librdkafka properties (``security.protocol``, ``sasl.*``, ``ssl.*``,
``client.rack``, fetch tuning, ...) that every Kafka client driftline creates gets: consumers, the
dead-letter producer, the admin client, the simulator's producer. A value written
``${env:NAME}`` is read from the environment and ``${file:PATH}`` from a file (its content,
without the trailing newline), so secrets stay out of the file; :func:`masked` hides secret
values wherever properties are printed. ``--kafka-config-file`` (a Java-style properties file)
and ``--kafka-config KEY=VALUE`` add to and override the section, in that order.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftline.alerting.config import AlertingConfig, ConfigError, _line, substitute_references
from driftline.detectors.defaults import (
    DEFAULT_MIN_SUPPORT,
    DEFAULT_SEGMENT_ATTRIBUTES,
    DEFAULT_SEGMENT_VALUES,
    SEGMENT_VOCABULARY,
)
from driftline.detectors.windows import checked_against

Scope = Literal["ingest", "read", "admin"]
KafkaValue = str | int | float | bool
KafkaProps = dict[str, KafkaValue]


class Settings(BaseSettings):
    """The ``service:`` section; each field's description is its comment in docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", extra="forbid", frozen=True)

    store: str = Field(
        "chdb://./driftline-data",
        description="Where sketches, metrics and alerts are stored: chdb://DIR is embedded ClickHouse "
        "(chDB, one process per directory), http(s)://USER:PASSWORD@HOST:8123/DB a ClickHouse server.",
    )
    store_cluster: str | None = Field(
        None,
        description="A ClickHouse server cluster: tables are created ON CLUSTER with Replicated engines.",
        examples=["driftline"],
    )
    bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers; unset, events arrive over HTTP only (POST /v1/events)."
    )
    kafka: KafkaProps = Field(
        default_factory=dict,
        repr=False,
        description="librdkafka properties of every Kafka client: the top-level kafka: section.",
    )
    topics: list[str] = Field(
        default_factory=lambda: ["predictions"], description="Kafka topics of prediction events."
    )
    group: str = Field("driftline", description="Kafka consumer group.")
    workers: int = Field(
        1, ge=1, description="Consumer group members, as threads of this process sharing one evaluator."
    )
    label_topic: str | None = Field(
        None,
        description="Kafka topic of labels that arrive after their predictions ({event_id, model_id, ts, "
        "label}): joined by event_id, counted in the pane of the prediction's event time.",
        examples=["labels"],
    )
    http_labels: bool = Field(
        False,
        description="Accept labels over HTTP too (POST /v1/labels), joined as the label topic's are. "
        "With it or a label topic, every prediction is kept for the label horizon.",
    )
    label_horizon_ms: int = Field(
        7 * 86_400_000,
        ge=1000,
        description="How long predictions wait for their labels (and labels for their predictions); a "
        "label still without its prediction after it is an orphan: counted and kept, never joined.",
    )
    batch_size: int = Field(5000, ge=1, description="Kafka messages decoded per batch.")
    dlq_suffix: str = Field(
        ".dlq", min_length=1, description="Dead-letter topic of each topic: its name plus this suffix."
    )
    instance_id: str | None = Field(
        None,
        description="Static group membership id: a restarted member gets its partitions back at once.",
        examples=["driftline-0"],
    )
    references: dict[str, str] = Field(
        default_factory=dict,
        description="Model -> reference file (Parquet/CSV of its training data), fitted and stored at "
        "start; PUT /v1/models/{id}/reference uploads one instead.",
    )
    against: str | None = Field(
        None,
        description="What the stream's windows are compared with, for models not registered with their "
        "own: none, the reference; previous (the window before), trailing:7d (the 7 days before) or "
        "seasonal:1w (the same window a week earlier), merged from stored panes on the reference's bins.",
        examples=["seasonal:1w"],
    )

    @field_validator("against")
    @classmethod
    def _against(cls, against: str | None) -> str | None:
        return checked_against(against)

    warmup_events: int = Field(
        10_000,
        ge=0,
        description="A model seen without a reference gets one fitted on its first this many events "
        "(by event time; kept in the store until then, none dead-lettered); 0: its events are "
        "dead-lettered instead. A model registered with warmup (PUT /v1/models/{id}) uses its own.",
    )
    warmup_max_models: int = Field(
        1_000,
        ge=1,
        description="Models warming up at once; the events of one more model without a reference are "
        "dead-lettered (a producer sending random model ids must not fill the store).",
    )
    segments: list[str] = Field(
        default_factory=list,
        description="Columns of the reference files that are segment attributes (fairness groups), "
        "not features; a model registered with segments (PUT /v1/models/{id}) uses its own.",
    )
    slices: list[str] = Field(
        default_factory=list,
        description="Attributes (segments or categorical features) whose values are watched as slices, "
        "for models not registered with their own: each value's reports and window metrics, alert rules "
        "with by. A reference built after setting them holds the slices.",
        examples=[["region"]],
    )
    segment_values: int = Field(
        DEFAULT_SEGMENT_VALUES,
        ge=1,
        le=SEGMENT_VOCABULARY,
        description="Fairness groups kept per segment attribute: the reference's most frequent values; "
        'any other value counts as <other> (driftline_segment_overflow_total{reason="value"}).',
    )
    segment_attributes: int = Field(
        DEFAULT_SEGMENT_ATTRIBUTES,
        ge=1,
        le=64,
        description="Segment attributes folded per model: its registered ones, else its reference's (by "
        "name); an event's other attributes are ignored (driftline_segment_overflow_total"
        '{reason="attribute"}).',
    )
    psi_threshold: float = Field(
        0.2, gt=0, description="PSI above it is drift, for models not registered (PUT /v1/models/{id})."
    )
    ks_threshold: float = Field(
        0.1, gt=0, le=1, description="KS statistic above it is drift, for models not registered."
    )
    min_support: int = Field(
        DEFAULT_MIN_SUPPORT,
        ge=1,
        description="Fairness: the smallest group compared, for models not registered.",
    )
    rules: str | None = Field(
        None,
        description="A separate alerting rules file; unset, the receivers and rules of this file.",
        examples=["/etc/driftline/rules.yaml"],
    )
    outbox: str | None = Field(
        None,
        description="Notification journal; unset, outbox.jsonl in the store directory "
        "(./driftline-outbox.jsonl with a ClickHouse server).",
        examples=["/var/lib/driftline/outbox.jsonl"],
    )
    http_host: str = Field("127.0.0.1", description="Address of the HTTP API; 0.0.0.0 for every interface.")
    http_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP API.")
    api_keys: dict[str, list[Scope]] = Field(
        default_factory=dict,
        repr=False,
        description="API key -> scopes: ingest (POST /v1/events), read (the GET routes), admin (models, "
        "references, silences; admin may do everything). Secret: better set DRIFTLINE_API_KEYS in the "
        "environment, which wins over this file.",
    )
    public_base_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The API's address as people reach it: Slack and PagerDuty notifications then link "
        "each alert's HTML report (GET /v1/models/{id}/report over the alert's window) and webhooks carry "
        "it as report_url.",
        examples=["https://driftline.example.com"],
    )
    open_mode: bool = Field(
        False, description="Serve the API without keys, on a trusted network only (serve --open)."
    )
    max_request_bytes: int = Field(
        16 << 20, ge=1024, description="Largest POST /v1/events body; larger ones get 413."
    )
    http_max_future_ms: int = Field(
        300_000,
        ge=0,
        description="POST /v1/events rejects an event stamped more than this ahead of the server's clock "
        "(Kafka allows 24 h); each API key's events are judged against its own watermark.",
    )
    max_range_ms: int = Field(
        7 * 86_400_000,
        ge=60_000,
        description="Longest from/to range of one GET /v1/models/{id}/drift, latency or fairness read; "
        "longer ones get 400 (read a long period in pieces). Without from/to a read covers the last window.",
    )
    max_reference_bytes: int = Field(
        256 << 20, ge=1024, description="Largest PUT /v1/models/{id}/reference body; larger ones get 413."
    )
    pane_ms: int = Field(
        60_000, ge=1000, description="Pane length in event time: what sketches are stored by."
    )
    window_ms: int = Field(
        3_600_000,
        ge=1000,
        description="Drift window length: its panes are merged and compared with the reference.",
    )
    lateness_ms: int = Field(
        300_000,
        ge=0,
        description="Allowed lateness: the watermark trails the newest event time by this much; an event "
        "for a pane already final goes to a correction sketch.",
    )
    idle_ms: int = Field(
        30_000,
        ge=1000,
        description="A Kafka partition read to its end that got nothing for this long, or an API key that "
        "sent nothing over HTTP for this long, stops holding the watermark back.",
    )
    flush_interval_ms: int = Field(
        5_000, ge=100, description="Open panes are stored this often; Kafka offsets are committed after."
    )
    ttl_days: int = Field(
        90, ge=1, description="Retention of sketches, metrics and alerts, fixed when the tables are created."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of driftline serve (JSON lines on stderr); --log-level wins."
    )


def load_settings(
    config: str | Path | None = None,
    kafka_extra: Mapping[str, KafkaValue] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from ``config`` (its ``service:`` and ``kafka:`` sections), the environment and
    explicit overrides; ``kafka_extra`` is laid over the ``kafka:`` section.

    Errors name the file, the line and the field, like the alerting rules do.
    """
    section: dict[str, Any] = {}
    kafka: KafkaProps = {}
    node = None
    if config is not None:
        path = Path(config)
        try:
            text = path.read_text()
            node = yaml.compose(text)
            document = yaml.safe_load(text) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        section = document.get("service") or {}
        raw = document.get("kafka") or {}
        if not isinstance(raw, dict):
            where = f"{path}:{_line(node, ['kafka'])}"
            raise ConfigError(f"{where}: kafka: expected a map of librdkafka properties")
        kafka = {
            str(k): resolve_kafka_value(v, f"{path}:{_line(node, ['kafka', k])}: kafka.{k}")
            for k, v in raw.items()
        }
    try:
        # Environment variables win over the file: pydantic-settings gives init kwargs priority,
        # so only file keys not set in the environment are passed as kwargs.
        env = Settings.model_fields.keys() & {k.removeprefix("DRIFTLINE_").lower() for k in _env()}
        kwargs = {k: v for k, v in section.items() if k not in env} | overrides
        if "kafka" not in env:
            kwargs["kafka"] = kafka
        settings = Settings(**kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        if err["loc"] and err["loc"][0] in overrides:
            where = "command line"
        else:
            where = f"{config}:{_line(node, ['service', *err['loc']])}" if config else "environment"
        raise ConfigError(f"{where}: service.{field}: {err['msg']}") from None
    if kafka_extra:
        settings = settings.model_copy(update={"kafka": {**settings.kafka, **kafka_extra}})
    return settings


def resolve_kafka_value(value: Any, where: str) -> KafkaValue:
    """A property value with every ``${env:NAME}`` and ``${file:PATH}`` replaced; ``where`` (as
    ``file:line: field``) prefixes the error when a variable is unset or a file unreadable."""
    if isinstance(value, bool | int | float):
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, number or boolean")
    return substitute_references(value, where)


def kafka_overrides(properties_file: str | None, pairs: Sequence[str]) -> KafkaProps:
    """``--kafka-config-file`` (``key=value`` lines, ``#``/``!`` comments) then ``--kafka-config
    KEY=VALUE`` pairs, later ones winning, with ``${env:...}``/``${file:...}`` resolved."""
    props: KafkaProps = {}
    if properties_file:
        try:
            lines = Path(properties_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"{properties_file}: cannot read: {exc.strerror}") from None
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line[0] in "#!":
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{properties_file}:{n}: expected key=value, got {line!r}")
            key = key.strip()
            props[key] = resolve_kafka_value(value.strip(), f"{properties_file}:{n}: {key}")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--kafka-config {pair!r}: expected KEY=VALUE")
        props[key] = resolve_kafka_value(value, f"--kafka-config {key}")
    return props


# Properties whose values are secrets (librdkafka's names): never printed, never logged.
_SECRET = re.compile(r"password|secret|\.pem$|sasl\.oauthbearer\.config|sasl\.jaas|token", re.IGNORECASE)
MASK = "********"


def masked(props: Mapping[str, KafkaValue]) -> dict[str, KafkaValue]:
    return {k: MASK if _SECRET.search(k) else v for k, v in props.items()}


def check_kafka(config: str | Path, props: Mapping[str, KafkaValue]) -> None:
    """Raise ``file:line: kafka.KEY: message`` when librdkafka refuses a property of ``config``'s
    kafka: section (an unknown name, a bad value, an unreadable certificate). The check builds a
    producer without ``bootstrap.servers``, so nothing connects."""
    if not props:
        return
    from confluent_kafka import KafkaError, KafkaException, Producer

    # librdkafka's own lines (no bootstrap.servers, consumer-only properties) go nowhere
    quiet = logging.Logger("driftline.config-check")
    quiet.addHandler(logging.NullHandler())
    try:
        Producer({**props, "logger": quiet})
    except KafkaException as exc:
        error = exc.args[0]
        message = " ".join((error.str() if isinstance(error, KafkaError) else str(error)).split())
        # librdkafka names the property in its message; the longest name found there is the one
        key = max((k for k in props if k in message), key=len, default=None)
        loc = ["kafka", key] if key else ["kafka"]
        node = yaml.compose(Path(config).read_text())
        raise ConfigError(f"{config}:{_line(node, loc)}: {'.'.join(loc)}: {message}") from None


def effective(settings: Settings, alerting: AlertingConfig) -> dict[str, Any]:
    """What a driftline.yaml amounts to, to print: the settings with the environment applied and
    the alerting sections with their defaults, every secret masked (API keys, the store's password,
    secret Kafka properties, receiver keys and tokens, Slack webhook URLs)."""
    service = settings.model_dump(exclude={"kafka"})
    service["store"] = masked_url(settings.store)
    service["api_keys"] = [{"key": MASK, "scopes": list(scopes)} for scopes in settings.api_keys.values()]
    rules = _plain(alerting.model_dump(by_alias=True, exclude_none=True))
    return {"service": service, "kafka": masked(settings.kafka), **rules}


def masked_url(url: str) -> str:
    """``url`` with the password of its user part masked (a ClickHouse DSN)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:{MASK}@{host}"))


def _plain(value: Any) -> Any:
    """Plain YAML-able data: SecretStr values become the mask, tuples lists."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _env() -> list[str]:
    return [k for k in os.environ if k.startswith("DRIFTLINE_")]
