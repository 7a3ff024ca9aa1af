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

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftline.alerting.config import ConfigError, _line

Scope = Literal["ingest", "read", "admin"]
KafkaValue = str | int | float | bool
KafkaProps = dict[str, KafkaValue]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", extra="forbid", frozen=True)

    store: str = "chdb://./driftline-data"
    store_cluster: str | None = None  # a ClickHouse server cluster: ON CLUSTER DDL, Replicated engines
    bootstrap: str | None = None  # Kafka; without it the service ingests over HTTP only
    kafka: KafkaProps = Field(default_factory=dict, repr=False)  # the top-level kafka: section
    topics: list[str] = Field(default_factory=lambda: ["predictions"])
    group: str = "driftline"
    workers: int = Field(1, ge=1)
    references: dict[str, str] = Field(default_factory=dict)  # model -> reference file
    segments: list[str] = Field(default_factory=list)  # segment columns of the reference files
    rules: str | None = None  # alerting rules file (defaults to the --config file when it has rules)
    outbox: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    api_keys: dict[str, list[Scope]] = Field(default_factory=dict, repr=False)  # key -> scopes; secret
    open_mode: bool = False  # no API keys at all: only when explicitly asked for
    max_request_bytes: int = Field(16 << 20, ge=1024)
    pane_ms: int = Field(60_000, ge=1000)
    window_ms: int = Field(3_600_000, ge=1000)
    lateness_ms: int = Field(300_000, ge=0)
    idle_ms: int = Field(30_000, ge=1000)
    flush_interval_ms: int = Field(5_000, ge=100)
    ttl_days: int = Field(90, ge=1)
    log_level: str = "INFO"


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
        where = f"{config}:{_line(node, ['service', *err['loc']])}" if config else "environment"
        raise ConfigError(f"{where}: service.{field}: {err['msg']}") from None
    if kafka_extra:
        settings = settings.model_copy(update={"kafka": {**settings.kafka, **kafka_extra}})
    return settings


_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")


def resolve_kafka_value(value: Any, where: str) -> KafkaValue:
    """A property value with every ``${env:NAME}`` and ``${file:PATH}`` replaced; ``where`` (as
    ``file:line: field``) prefixes the error when a variable is unset or a file unreadable."""
    if isinstance(value, bool | int | float):
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, number or boolean")

    def substitute(m: re.Match[str]) -> str:
        kind, name = m.groups()
        if kind == "env":
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]
        try:
            return Path(name).read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {name}: {exc.strerror}") from None

    return _REFERENCE.sub(substitute, value)


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


def _env() -> list[str]:
    return [k for k in os.environ if k.startswith("DRIFTLINE_")]
