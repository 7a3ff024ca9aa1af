"""Service settings: built once at an entry point and passed down, never read from anywhere else.

Sources, later ones winning: defaults, the ``service:`` section of ``driftline.yaml``, then
environment variables with the ``DRIFTLINE_`` prefix (``DRIFTLINE_STORE``,
``DRIFTLINE_API_KEYS='{"k3y": ["read", "ingest"]}'``, ...). Secrets are ``SecretStr``: they
never appear in logs or reprs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftline.alerting.config import ConfigError, _line

Scope = Literal["ingest", "read", "admin"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", extra="forbid", frozen=True)

    store: str = "chdb://./driftline-data"
    store_cluster: str | None = None  # a ClickHouse server cluster: ON CLUSTER DDL, Replicated engines
    bootstrap: str | None = None  # Kafka; without it the service ingests over HTTP only
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


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config``'s ``service:`` section, the environment and explicit overrides.

    Errors name the file, the line and the field, like the alerting rules do.
    """
    section: dict[str, Any] = {}
    node = None
    if config is not None:
        path = Path(config)
        try:
            text = path.read_text()
            node = yaml.compose(text)
            section = (yaml.safe_load(text) or {}).get("service") or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    try:
        # Environment variables win over the file: pydantic-settings gives init kwargs priority,
        # so only file keys not set in the environment are passed as kwargs.
        env = Settings.model_fields.keys() & {k.removeprefix("DRIFTLINE_").lower() for k in _env()}
        kwargs = {k: v for k, v in section.items() if k not in env} | overrides
        return Settings(**kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        where = f"{config}:{_line(node, ['service', *err['loc']])}" if config else "environment"
        raise ConfigError(f"{where}: service.{field}: {err['msg']}") from None


def _env() -> list[str]:
    import os

    return [k for k in os.environ if k.startswith("DRIFTLINE_")]
