"""Alerting configuration (``driftline.yaml``): rules, receivers, grouping, inhibition.

Validated once at start; every error names the file, the line and the field::

    driftline.yaml:14: rules[1].threshold: Input should be a valid number

Defaults are effect sizes (PSI > 0.2, KS D > 0.1, disparate impact < 0.8) because p-values at
large n flag trivial shifts; p-value rules are corrected across features (Benjamini–Hochberg).
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

Severity = Literal["critical", "error", "warning", "info"]
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
# Metrics a rule may watch: what the stream writes to drift_metrics, p-values of the tests, and
# the engine's own staleness measure (evaluated on a timer).
METRICS = {
    "psi",
    "ks",
    "js",
    "wasserstein",
    "chi2",
    "null_rate",
    "out_of_range_rate",
    "events",
    "latency_p50",
    "latency_p90",
    "latency_p95",
    "latency_p99",
    "latency_max",
    "latency_mean",
    "demographic_parity_difference",
    "disparate_impact",
    "equal_opportunity_difference",
    "ks_p_value",
    "chi2_p_value",
    "seconds_since_last_event",
}
P_VALUE_METRICS = {"ks_p_value", "chi2_p_value"}


class ConfigError(ValueError):
    """A configuration problem, already formatted as ``file:line: field: message``."""


def _duration_s(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for suffix in ("ms", "s", "m", "h", "d"):
        number = text.removesuffix(suffix)
        if number != text and number.replace(".", "", 1).isdigit():
            return float(number) * units[suffix]
    raise ValueError(f"{value!r} is not a duration like 30s, 5m, 4h")


Duration = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PagerDutyConfig(Strict):
    routing_key: SecretStr
    url: str = "https://events.pagerduty.com/v2/enqueue"


class SlackConfig(Strict):
    webhook_url: SecretStr
    grafana_url: str | None = None  # base URL for dashboard links
    min_interval: Duration = 1.0  # seconds; Slack allows about one message per second per webhook


class WebhookConfig(Strict):
    url: str
    secret: SecretStr | None = None  # Standard Webhooks secret, "whsec_<base64>"
    preset: Literal["cloudevents", "airflow", "kubeflow", "github", "argo"] = "cloudevents"
    params: dict[str, Any] = Field(default_factory=dict)  # dag_id, pipeline_id, repository, ...
    token: SecretStr | None = None  # bearer token for Airflow / Kubeflow / GitHub
    cooldown: Duration = 86_400.0  # seconds per model: one drift episode triggers one retraining run

    @model_validator(mode="after")
    def _preset_params(self) -> WebhookConfig:
        needed = {"airflow": ["dag_id"], "github": ["repository"], "kubeflow": ["pipeline_id"]}.get(
            self.preset, []
        )
        missing = [p for p in needed if p not in self.params]
        if missing:
            raise ValueError(f"preset {self.preset!r} needs params: {', '.join(missing)}")
        return self

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> float:
        return _duration_s(v)


class ReceiverConfig(Strict):
    name: str
    pagerduty: PagerDutyConfig | None = None
    slack: SlackConfig | None = None
    webhook: WebhookConfig | None = None
    timeout: Duration = 10.0  # seconds per HTTP attempt

    @model_validator(mode="after")
    def _exactly_one(self) -> ReceiverConfig:
        kinds = [k for k in ("pagerduty", "slack", "webhook") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"receiver {self.name!r} needs exactly one of pagerduty, slack, webhook")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("pagerduty", "slack", "webhook") if getattr(self, k) is not None)


class Rule(Strict):
    name: str
    metric: str
    op: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    threshold: float
    model: str = "*"  # glob
    features: str = "*"  # glob; model-level metrics (latency, events) have feature ""
    for_windows: int = Field(1, alias="for", ge=1)
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    receivers: list[str] = Field(default_factory=list)
    retrain: str | None = None  # name of a webhook receiver, called once per episode (cooldown)
    correction: Literal["bh", "none"] = "bh"  # for p-value metrics: Benjamini–Hochberg across features

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; one of {', '.join(sorted(METRICS))}")
        return v

    def matches(self, model: str, feature: str) -> bool:
        return fnmatch.fnmatchcase(model, self.model) and fnmatch.fnmatchcase(feature, self.features)

    def breached(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


class Grouping(Strict):
    group_wait: Duration = 30.0  # seconds; YAML may say 30s, 5m, 4h
    group_interval: Duration = 300.0
    repeat_interval: Duration = 4 * 3600.0

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration_s(v)


class Inhibit(Strict):
    """A firing alert of ``source_severity`` mutes ``target_severity`` alerts equal on ``equal``."""

    source_severity: Severity = "critical"
    target_severity: Severity = "warning"
    equal: tuple[Literal["model", "feature", "rule"], ...] = ("model", "feature")


class AlertingConfig(Strict):
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    grouping: Grouping = Field(default_factory=Grouping)
    inhibit: list[Inhibit] = Field(default_factory=lambda: [Inhibit()])
    staleness_check: Duration = 60.0  # seconds between staleness evaluations

    @model_validator(mode="after")
    def _references(self) -> AlertingConfig:
        names = [r.name for r in self.receivers]
        if len(set(names)) != len(names):
            raise ValueError("receiver names must be unique")
        for i, rule in enumerate(self.rules):
            for name in [*rule.receivers, *([rule.retrain] if rule.retrain else [])]:
                if name not in names:
                    raise ValueError(
                        f"rules[{i}] ({rule.name}) names receiver {name!r}, which is not defined"
                    )
            if rule.retrain and self.receiver(rule.retrain).webhook is None:
                raise ValueError(
                    f"rules[{i}] ({rule.name}): retrain receiver {rule.retrain!r} must be a webhook"
                )
        return self

    def receiver(self, name: str) -> ReceiverConfig:
        return next(r for r in self.receivers if r.name == name)


def default_rules(receivers: list[str]) -> list[Rule]:
    """Effect-size defaults shipped with driftline."""

    def rule(name: str, metric: str, op: str, threshold: float, severity: str, summary: str) -> Rule:
        return Rule.model_validate(
            {
                "name": name,
                "metric": metric,
                "op": op,
                "threshold": threshold,
                "severity": severity,
                "receivers": receivers,
                "annotations": {"summary": summary},
            }
        )

    return [
        rule(
            "feature-psi",
            "psi",
            ">",
            0.2,
            "warning",
            "PSI of {feature} on {model} is {value:.3f} (> {threshold})",
        ),
        rule(
            "feature-ks",
            "ks",
            ">",
            0.1,
            "warning",
            "KS D of {feature} on {model} is {value:.3f} (> {threshold})",
        ),
        rule(
            "disparate-impact",
            "disparate_impact",
            "<",
            0.8,
            "error",
            "disparate impact by {feature} on {model} is {value:.2f} (< 0.8)",
        ),
    ]


def load(path: str | Path) -> AlertingConfig:
    """Parse and validate; raises ConfigError naming file, line and field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}:1: the top level must be a mapping")
    data.pop("service", None)  # the service's own settings share the file (driftline.settings)
    try:
        return AlertingConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [x for x in err["loc"] if x not in ("function-after", "function-before")]
        field = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc).lstrip(".") or "(top level)"
        raise ConfigError(f"{p}:{_line(node, loc)}: {field}: {err['msg']}") from None


def _line(node: yaml.Node | None, loc: list[Any]) -> int:
    """Line of the deepest YAML node on the error path (1-based)."""
    best = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        best = node.start_mark.line + 1
    return best
