"""Alerting configuration (``driftline.yaml``): rules, receivers, grouping, inhibition.

Validated once at start; every error names the file, the line and the field::

    driftline.yaml:14: rules[1].threshold: Input should be a valid number

Defaults are effect sizes (PSI > 0.2, KS D > 0.1, disparate impact < 0.8) because p-values at
large n flag trivial shifts; p-value rules are corrected across features (Benjamini–Hochberg).
"""

from __future__ import annotations

import fnmatch
import operator
import os
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from driftline.detectors.defaults import PERFORMANCE_METRICS
from driftline.detectors.slice_ids import parse_slice_id

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
    "drifted_share",
    "missing_features",
    "new_features",
}
# The model's outputs drift like a feature: prediction_psi, label_ks, ... (feature "")
OUTPUT_METRICS = {
    f"{role}_{m}"
    for role in ("prediction", "label")
    for m in ("psi", "ks", "js", "wasserstein", "chi2", "null_rate", "out_of_range_rate")
}
OUTPUT_TESTS = ("prediction_ks", "prediction_chi2", "label_ks", "label_chi2")
# and the model's quality once labels arrived: accuracy, roc_auc, rmse, ... (op either way)
METRICS |= OUTPUT_METRICS | {f"{m}_p_value" for m in OUTPUT_TESTS} | set(PERFORMANCE_METRICS.values())
P_VALUE_METRICS = {m for m in METRICS if m.endswith("_p_value")}
# Metrics a model registers a threshold for: a rule on them may leave its own out.
MODEL_THRESHOLDS = ("psi", "ks", "prediction_psi", "prediction_ks", "label_psi", "label_ks")
# ... and may be judged by significance instead (threshold: auto)
AUTO_THRESHOLDS = MODEL_THRESHOLDS


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

# What an annotation template may use, with a value of the type the engine fills in.
TEMPLATE_FIELDS: dict[str, Any] = {
    "model": "churn",
    "version": "v1",
    "feature": "age",
    "metric": "psi",
    "value": 0.25,
    "op": ">",
    "threshold": 0.2,
    "rule": "feature-psi",
}


def _check_template(text: str) -> str:
    """Render once with sample values at load, so a template cannot fail when an alert fires."""
    names = ", ".join(f"{{{n}}}" for n in TEMPLATE_FIELDS)
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc} (a literal brace is written {{{{ or }}}})") from None
    unknown = next((name for name in fields if name not in TEMPLATE_FIELDS), None)
    try:
        if unknown is None:
            text.format(**TEMPLATE_FIELDS)
    except KeyError as exc:  # a field inside a format spec: {value:>{width}}
        unknown = exc.args[0]
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"{text!r} cannot be rendered: {exc}") from None
    if unknown is not None:
        raise ValueError(f"{{{unknown}}} is not a field; use {names} (no attribute or index lookups)")
    return text


Template = Annotated[str, AfterValidator(_check_template)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PagerDutyConfig(Strict):
    routing_key: SecretStr = Field(description="Integration key of a PagerDuty service (Events API v2).")
    url: str = Field("https://events.pagerduty.com/v2/enqueue", description="Events API endpoint.")


class SlackConfig(Strict):
    webhook_url: SecretStr = Field(description="Incoming webhook URL (a secret).")
    grafana_url: str | None = Field(None, description="Grafana base URL for dashboard links in messages.")
    min_interval: Duration = Field(
        1.0, description="Seconds between messages; Slack allows about one per second per webhook."
    )


class WebhookConfig(Strict):
    url: str = Field(
        description="The endpoint; with the airflow, kubeflow or github preset, the base URL of that API."
    )
    secret: SecretStr | None = Field(
        None, description='Standard Webhooks signing secret, "whsec_<base64>": every request is signed.'
    )
    preset: Literal["cloudevents", "airflow", "kubeflow", "github", "argo"] = Field(
        "cloudevents",
        description="Body and path: cloudevents (CloudEvents 1.0), airflow (dagRuns), kubeflow (runs), "
        "github (repository_dispatch) or argo (Argo Events).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="What the preset needs: dag_id (airflow), pipeline_id (kubeflow), repository (github); "
        "optional: conf (airflow), pipeline_version_id, experiment_id, parameters (kubeflow), event_type "
        "(github).",
    )
    token: SecretStr | None = Field(None, description="Bearer token for Airflow, Kubeflow or GitHub.")
    cooldown: Duration = Field(
        86_400.0,
        description="Seconds (or 30m, 24h) per model between retraining calls: one drift episode, one run.",
    )

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
    name: str = Field(description="What rules call the receiver; each receiver has exactly one kind.")
    pagerduty: PagerDutyConfig | None = Field(
        None, description="PagerDuty: one incident per alert episode, resolved with it."
    )
    slack: SlackConfig | None = Field(None, description="Slack incoming webhook, Block Kit messages.")
    webhook: WebhookConfig | None = Field(
        None, description="A signed HTTP POST; with retrain: on a rule, a retraining pipeline."
    )
    timeout: Duration = Field(10.0, description="Seconds per HTTP attempt.")
    max_attempts: int = Field(
        20,
        ge=1,
        description="Attempts (with exponential backoff up to 5 minutes apart: about an hour for 20) "
        "before a notification is given up as dead: logged as an error, counted in "
        "driftline_notifications_dead_total and listed by driftline alerts. Other alerts to the "
        "receiver are not held up meanwhile.",
    )
    max_age: Duration = Field(
        3600.0,
        description="Seconds (or 30m, 6h) after it was queued by which a notification not yet delivered "
        "is given up as dead.",
    )

    @field_validator("max_age", mode="before")
    @classmethod
    def _max_age(cls, v: Any) -> float:
        return _duration_s(v)

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
    name: str = Field(description="Names the alert (the rule label).")
    metric: str = Field(
        description=f"What is watched in every evaluated window: {', '.join(sorted(METRICS))}."
    )
    op: Literal[">", ">=", "<", "<=", "==", "!="] = Field(
        ">", description="Breached when metric OP threshold."
    )
    threshold: float | Literal["auto"] | None = Field(
        None,
        validate_default=True,
        description="The value the metric is compared with; for psi and ks it may be left out: each "
        "model's registered threshold (PUT /v1/models/{id}), else 0.2 and 0.1 (or, with the model's "
        "psi_alpha / ks_alpha, as auto). auto (psi and ks only): by significance at alpha for the "
        "window's sample sizes: PSI above its critical value (chi-square bound for the two sample "
        "sizes and the bins), KS by its Benjamini-Hochberg adjusted p-value across the window's features "
        "below alpha (the alert's value is then that p-value, its threshold alpha).",
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="The significance level of threshold: auto (false alarms per test)."
    )
    model: str = Field("*", description="Glob of the models the rule watches.")
    features: str = Field(
        "*", description='Glob of features; model-level metrics (latency, events) have feature "".'
    )
    by: list[str] = Field(
        default_factory=list,
        description="Slice attributes (e.g. [region]): one alert per slice of the model's, labelled with "
        "it; without, the rule watches the whole model only. The model must be watched by these slices.",
        examples=[["region"]],
    )
    for_windows: int = Field(
        1, alias="for", ge=1, description="Consecutive breached windows before it fires (pending until then)."
    )
    severity: Severity = Field("warning", description="critical, error, warning or info.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the alert.")
    annotations: dict[str, Template] = Field(
        default_factory=dict,
        description="Texts of the notifications (summary, runbook, ...); {model}, {version}, {feature}, "
        "{metric}, {value}, {op}, {threshold} and {rule} are filled in (Python format, e.g. "
        "{value:.3f}; checked at load).",
    )
    receivers: list[str] = Field(
        default_factory=list, description="Receivers notified when it fires and resolves."
    )
    retrain: str | None = Field(
        None, description="A webhook receiver called once per episode (its cooldown) to retrain the model."
    )
    correction: Literal["bh", "none"] = Field(
        "bh", description="For p-value metrics: Benjamini-Hochberg across the features of a window, or none."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; one of {', '.join(sorted(METRICS))}")
        return v

    @field_validator("threshold", mode="before")
    @classmethod
    def _number_or_auto(cls, v: Any) -> Any:
        """One message for anything else (not one per member of the union)."""
        if v is None or v == "auto" or (isinstance(v, int | float) and not isinstance(v, bool)):
            return v
        try:
            return float(v)
        except (TypeError, ValueError):
            raise PydanticCustomError("float_parsing", "Input should be a valid number or auto") from None

    @field_validator("threshold")
    @classmethod
    def _threshold_given(cls, v: float | str | None, info: ValidationInfo) -> float | str | None:
        metric = info.data.get("metric")
        if v == "auto" and metric is not None and metric not in AUTO_THRESHOLDS:
            raise ValueError(f"auto is for {', '.join(AUTO_THRESHOLDS)} only, not {metric}")
        if v is None and metric is not None and metric not in MODEL_THRESHOLDS:
            raise ValueError(
                f"required for metric {metric} (only {', '.join(MODEL_THRESHOLDS)} take the model's)"
            )
        return v

    def matches(self, model: str, feature: str) -> bool:
        """A whole model's metric, or (with ``by``) a slice's, ``model[attribute=value]``."""
        parsed = parse_slice_id(model)
        if parsed is not None:
            if parsed[1] not in self.by:
                return False
            model = parsed[0]
        elif self.by:
            return False
        return fnmatch.fnmatchcase(model, self.model) and fnmatch.fnmatchcase(feature, self.features)

    def breached(self, value: float, threshold: float, op: str | None = None) -> bool:
        """``threshold``: the rule's own, or the model's (see :attr:`threshold`); ``op``: the
        rule's unless given (an auto KS rule compares its p-value with ``<``)."""
        return OPS[op or self.op](value, threshold)


class Grouping(Strict):
    """Alerts of one receiver, model and rule are sent together."""

    group_wait: Duration = Field(
        30.0, description="Seconds (or 30s, 5m, 4h) to wait for more alerts before a group's first message."
    )
    group_interval: Duration = Field(300.0, description="Seconds to wait before telling a group's changes.")
    repeat_interval: Duration = Field(
        4 * 3600.0, description="Seconds after which a group still firing is told again."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration_s(v)


class Inhibit(Strict):
    """A firing alert of ``source_severity`` mutes ``target_severity`` alerts equal on ``equal``."""

    source_severity: Severity = Field("critical", description="Severity of the firing alert that mutes.")
    target_severity: Severity = Field("warning", description="Severity of the alerts it mutes.")
    equal: tuple[Literal["model", "feature", "rule"], ...] = Field(
        ("model", "feature"), description="Labels the two alerts must share: model, feature, rule."
    )


class Staleness(Strict):
    """How seconds_since_last_event rules watch models."""

    interval: Duration = Field(
        60.0, description="Seconds (or 1m) between evaluations of seconds_since_last_event rules."
    )
    retire_after: Duration = Field(
        7 * 86400.0,
        description="Liveness is per model (its newest event of any version), so a version replaced by "
        "another never pages; a model silent this long (or 30d, ...) is retired: its alert resolves "
        "and it is no longer watched until its events resume.",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration_s(v)


class AlertingConfig(Strict):
    receivers: list[ReceiverConfig] = Field(default_factory=list, description="Where notifications go.")
    rules: list[Rule] = Field(default_factory=list, description="What fires, evaluated on every window.")
    grouping: Grouping = Field(
        default_factory=Grouping, description="How alerts are batched into notifications."
    )
    inhibit: list[Inhibit] = Field(
        default_factory=lambda: [Inhibit()], description="Which firing alerts mute which others."
    )
    staleness: Staleness = Field(
        default_factory=Staleness, description="How silent models are watched (seconds_since_last_event)."
    )

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
    """Effect-size defaults shipped with driftline: PSI and KS D above each model's registered
    thresholds (0.2 and 0.1 unless registered otherwise), disparate impact below 0.8."""

    def rule(name: str, metric: str, op: str, threshold: float | None, severity: str, summary: str) -> Rule:
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
            None,  # the model's
            "warning",
            "PSI of {feature} on {model} is {value:.3f} (> {threshold})",
        ),
        rule(
            "feature-ks",
            "ks",
            ">",
            None,
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
    for section in ("service", "kafka"):  # the service's own settings share the file (driftline.settings)
        data.pop(section, None)
    if isinstance(data.get("receivers"), list):  # their keys, URLs and secrets may come from elsewhere
        data["receivers"] = _substitute_all(data["receivers"], ["receivers"], p, node)
    try:
        return AlertingConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [x for x in err["loc"] if x not in ("function-after", "function-before")]
        field = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc).lstrip(".") or "(top level)"
        raise ConfigError(f"{p}:{_line(node, loc)}: {field}: {err['msg']}") from None


_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")


def substitute_references(text: str, where: str) -> str:
    """``text`` with every ``${env:NAME}`` (an environment variable) and ``${file:PATH}`` (a file's
    content, without its trailing newline) replaced, so secrets stay out of the configuration;
    ``where`` (``file:line: field``) prefixes the error for an unset variable or unreadable file."""

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

    return _REFERENCE.sub(substitute, text)


def _substitute_all(value: Any, loc: list[Any], path: Path, node: yaml.Node | None) -> Any:
    if isinstance(value, str):
        field = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc).lstrip(".")
        return substitute_references(value, f"{path}:{_line(node, loc)}: {field}")
    if isinstance(value, dict):
        return {k: _substitute_all(v, [*loc, k], path, node) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_all(v, [*loc, i], path, node) for i, v in enumerate(value)]
    return value


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
