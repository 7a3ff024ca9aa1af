"""Rule evaluation and the alert state machine: inactive -> pending -> firing -> resolved.

A rule is evaluated when a window's metrics land (and, for staleness, on a timer). A breach
must hold for ``for`` consecutive windows before the alert fires; a newest window without a
breach resolves it. A window may be computed again (another member's partials, late events, a
restart's catch-up): its latest value replaces the earlier one, so each window still counts once
towards ``for``. Every transition is returned (for the notification pipeline) and stored, so a
restarted engine continues where it left.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from driftline.alerting.config import MODEL_THRESHOLDS, P_VALUE_METRICS, AlertingConfig, Rule
from driftline.detectors.profile import ModelRegistry, ModelSettings
from driftline.detectors.slice_ids import parse_slice_id
from driftline.detectors.stats import benjamini_hochberg, psi_critical

State = Literal["inactive", "pending", "firing"]
STALENESS = "seconds_since_last_event"
log = logging.getLogger("driftline.alerting")


@dataclass(frozen=True)
class Observation:
    """One metric value of one window (a ``drift_metrics`` row, reduced to what rules need)."""

    model: str
    version: str
    feature: str
    metric: str
    value: float
    p_value: float | None
    window_start: int
    window_end: int
    n_ref: int = 0  # the row's sample sizes (a psi_dof row: the feature's non-missing counts)
    n_cur: int = 0
    # a drifted feature's top PSI contributors (``explain`` of the drift report), for the alert
    explain: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Alert:
    """A firing or resolved alert, as the notification pipeline sees it."""

    fingerprint: str  # identity of (rule, model, version, feature)
    episode: str  # identity of one firing episode: PagerDuty's dedup_key
    rule: str
    model: str
    version: str
    feature: str
    metric: str
    severity: str
    status: Literal["firing", "resolved"]
    value: float
    op: str
    threshold: float
    window_start: int
    window_end: int
    starts_at: float
    ends_at: float | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    receivers: tuple[str, ...]
    retrain: str | None
    # what moved the feature in the window (bins or categories with reference and current share
    # and PSI term, largest first); none for model-level metrics or a feature that did not drift
    explain: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (
                dict(v)
                if isinstance(v, Mapping)
                else [dict(x) if isinstance(x, Mapping) else x for x in v]
                if isinstance(v, tuple)
                else v
            )
            for k, v in self.__dict__.items()
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        # an alert journaled or stored before explanations existed has none
        return cls(**{**d, "receivers": tuple(d["receivers"]), "explain": tuple(d.get("explain", ()))})


HISTORY = 64  # windows remembered per alert (at least every rule's `for`)


@dataclass
class AlertState:
    state: State = "inactive"
    breaches: int = 0  # consecutive breached windows up to the newest one
    started: float | None = None  # episode start
    last: Alert | None = None
    windows: dict[int, bool] = field(default_factory=dict)  # window end -> breached (latest value)

    def record(self, window_end: int, breached: bool) -> bool:
        """Note a window's latest verdict; False if it is older than every window remembered."""
        if window_end not in self.windows and len(self.windows) >= HISTORY and window_end < min(self.windows):
            return False
        self.windows[window_end] = breached
        if len(self.windows) > HISTORY:
            del self.windows[min(self.windows)]
        self.breaches = 0
        for end in sorted(self.windows, reverse=True):
            if not self.windows[end]:
                break
            self.breaches += 1
        return True

    @property
    def newest(self) -> int:
        return max(self.windows, default=-1)


class TransitionLog(Protocol):
    def write_alert_transitions(self, transitions: Sequence[tuple[str, State, Alert, int]]) -> None: ...

    def alert_states(self) -> dict[str, tuple[State, int, float | None, dict[str, Any]]]: ...


def fingerprint(rule: str, model: str, version: str, feature: str) -> str:
    return hashlib.sha256(f"{rule}\x00{model}\x00{version}\x00{feature}".encode()).hexdigest()[:16]


@dataclass
class AlertEngine:
    config: AlertingConfig
    log: TransitionLog | None = None
    states: dict[str, AlertState] = field(default_factory=dict)
    unlogged: list[tuple[str, State, Alert, int]] = field(default_factory=list)
    # whose registered thresholds the rules without one compare with
    models: Mapping[str, ModelSettings] = field(default_factory=ModelRegistry)

    def restore(self) -> None:
        """Continue from the stored states (pending counts and firing episodes survive restarts)."""
        if self.log is None:
            return
        for fp, (state, breaches, started, alert) in self.log.alert_states().items():
            last = Alert.from_dict(alert) if alert else None
            st = AlertState(state, breaches, started, last)
            if last is not None:  # the streak as stored, ending at the newest window seen
                st.windows = {last.window_end - k: True for k in range(breaches)} or {last.window_end: False}
            self.states[fp] = st

    def evaluate(self, observations: Sequence[Observation], now: float) -> list[Alert]:
        """Evaluate every rule on one window's observations; return what must be notified:
        alerts that started firing and alerts that resolved (pending ones are only stored)."""
        transitions: list[tuple[str, State, Alert, int]] = []
        notify: list[Alert] = []
        for rule in self.config.rules:
            for obs, value, threshold, op in self._values(rule, observations):
                step = self._step(rule, obs, value, threshold, op, now)
                if step is not None:
                    state, alert, tell = step
                    transitions.append(
                        (alert.fingerprint, state, alert, self.states[alert.fingerprint].breaches)
                    )
                    if tell:
                        notify.append(alert)
        self.unlogged.extend(transitions)
        return notify

    def flush_log(self) -> None:
        """Store the transitions (after the caller journaled what to notify: a store outage must
        not lose a page). Raises the store's error; the transitions stay queued for next time."""
        if self.unlogged and self.log is not None:
            self.log.write_alert_transitions(self.unlogged)
        self.unlogged = []

    def evaluate_staleness(self, last_event: Mapping[tuple[str, str], float], now: float) -> list[Alert]:
        """``seconds_since_last_event`` rules, on a timer: silence from a model is an alert too.

        Liveness is per model (its newest event of any version), so a version replaced by the next
        one does not page. A model silent for ``staleness.retire_after`` is retired: its alert
        resolves (closing the incident) and it is not watched until its events resume."""
        newest: dict[str, float] = {}
        for (model, _), seen in last_event.items():
            newest[model] = max(seen, newest.get(model, seen))
        retire_after = self.config.staleness.retire_after
        live = {model: seen for model, seen in newest.items() if now - seen < retire_after}
        observations = [
            Observation(model, "", "", STALENESS, now - seen, None, 0, int(now * 1000))
            for model, seen in live.items()
        ]
        return self.evaluate(observations, now) + self._retire(live, now)

    def _retire(self, live: Mapping[str, float], now: float) -> list[Alert]:
        """End staleness alerts no longer evaluated: retired models, and alerts per version (how
        liveness was tracked before it was per model)."""
        notify: list[Alert] = []
        for fp, st in self.states.items():
            last = st.last
            if st.state == "inactive" or last is None or last.metric != STALENESS:
                continue
            if last.model in live and last.version == "":
                continue
            why = "tracked per model now" if last.model in live else "the model is retired (silent too long)"
            log.info("staleness alert %s on %s %s resolved: %s", last.rule, last.model, last.version, why)
            resolved = replace(last, status="resolved", ends_at=now)
            if st.state == "firing":
                notify.append(resolved)
            st.state, st.started, st.last, st.breaches = "inactive", None, resolved, 0
            st.windows.clear()
            self.unlogged.append((fp, "inactive", resolved, 0))
        return notify

    def _values(
        self, rule: Rule, observations: Sequence[Observation]
    ) -> list[tuple[Observation, float, float, str]]:
        """What the rule compares in this window: (row, value, threshold, op) per matched row."""
        if rule.metric in P_VALUE_METRICS:
            base = rule.metric.removesuffix("_p_value")
            rows = [
                o
                for o in observations
                if o.metric == base and o.p_value is not None and rule.matches(o.model, o.feature)
            ]
            p = [float(o.p_value) for o in rows]  # type: ignore[arg-type]
            adjusted = benjamini_hochberg(p) if rule.correction == "bh" else p
            pairs = zip(rows, adjusted, strict=True)
            return [(o, v, self._threshold(rule, o.model), rule.op) for o, v in pairs]
        matched = [o for o in observations if o.metric == rule.metric and rule.matches(o.model, o.feature)]
        out: list[tuple[Observation, float, float, str]] = []
        tests: list[tuple[Observation, float]] = []  # auto KS: the p-values, adjusted together below
        dof = {(o.model, o.version, o.feature): o for o in observations if o.metric == f"{rule.metric}_dof"}
        for o in matched:
            alpha = self._alpha(rule, o.model)
            if alpha is None:
                out.append((o, o.value, self._threshold(rule, o.model), rule.op))
            elif rule.metric.endswith("ks"):
                if o.p_value is not None:
                    tests.append((o, alpha))
            elif (d := dof.get((o.model, o.version, o.feature))) is not None:
                # the critical PSI for this window's sample sizes; without them (rows stored before
                # psi_dof was) there is no verdict
                out.append((o, o.value, psi_critical(d.n_ref, d.n_cur, int(d.value) + 1, alpha), rule.op))
        p = [float(o.p_value) for o, _ in tests]  # type: ignore[arg-type]
        adjusted = benjamini_hochberg(p) if rule.correction == "bh" else p
        out += [(o, v, alpha, "<") for (o, alpha), v in zip(tests, adjusted, strict=True)]
        return out

    def _alpha(self, rule: Rule, model: str) -> float | None:
        """The significance a psi / ks rule judges by (``threshold: auto``, or a rule without a
        threshold on a model registered with ``psi_alpha`` / ``ks_alpha``); None: a threshold."""
        if rule.threshold == "auto":
            return rule.alpha
        if rule.threshold is None and rule.metric in MODEL_THRESHOLDS:
            base = rule.metric.removeprefix("prediction_").removeprefix("label_")
            alpha: float | None = getattr(self.models[model].thresholds, f"{base}_alpha")
            return alpha
        return None

    def _step(
        self, rule: Rule, obs: Observation, value: float, threshold: float, op: str, now: float
    ) -> tuple[State, Alert, bool] | None:
        """Advance one alert; returns (new state, alert, notify?) when the state changed."""
        fp = fingerprint(rule.name, obs.model, obs.version, obs.feature)
        st = self.states.setdefault(fp, AlertState())
        if not math.isfinite(value) or not math.isfinite(threshold):
            return None
        breached = rule.breached(value, threshold, op)
        before = st.windows.get(obs.window_end)
        if not st.record(obs.window_end, breached):
            return None  # older than anything the alert still weighs
        newest = obs.window_end == st.newest
        if st.state == "firing":
            if st.windows[st.newest]:
                if newest:  # still firing: keep the latest value for the resolve message
                    st.last = self._alert(rule, obs, value, threshold, op, "firing", st, now, fp)
                return None
            resolved = self._alert(rule, obs, value, threshold, op, "resolved", st, now, fp)
            st.state, st.started, st.last = "inactive", None, resolved
            return "inactive", resolved, True
        if st.breaches >= rule.for_windows:
            st.started = st.started if st.started is not None else now
            st.state = "firing"
            st.last = self._alert(rule, obs, value, threshold, op, "firing", st, now, fp)
            return "firing", st.last, True
        if st.breaches > 0:
            changed = st.state != "pending" or before != breached
            st.started = st.started if st.state == "pending" and st.started is not None else now
            st.state = "pending"
            st.last = self._alert(rule, obs, value, threshold, op, "firing", st, now, fp)
            # Pending: store the count, so a restart continues towards `for: N`.
            return ("pending", st.last, False) if changed else None
        if st.state == "pending":
            st.state, st.started = "inactive", None
            st.last = self._alert(rule, obs, value, threshold, op, "resolved", st, now, fp)
            return "inactive", st.last, False
        return None

    def _threshold(self, rule: Rule, model: str) -> float:
        if isinstance(rule.threshold, float | int):
            return float(rule.threshold)
        base = rule.metric.removeprefix("prediction_").removeprefix("label_")
        return float(getattr(self.models[model].thresholds, base))  # psi or ks: see Rule

    def _alert(
        self,
        rule: Rule,
        obs: Observation,
        value: float,
        threshold: float,
        op: str,
        status: Literal["firing", "resolved"],
        st: AlertState,
        now: float,
        fp: str,
    ) -> Alert:
        started = st.started if st.started is not None else now
        fields = {
            "model": obs.model,
            "version": obs.version,
            "feature": obs.feature,
            "metric": rule.metric,
            "value": value,
            "threshold": threshold,
            "op": op,
            "rule": rule.name,
        }
        return Alert(
            fingerprint=fp,
            episode=f"{fp}-{int(started)}",
            rule=rule.name,
            model=obs.model,
            version=obs.version,
            feature=obs.feature,
            metric=rule.metric,
            severity=rule.severity,
            status=status,
            value=value,
            op=op,
            threshold=threshold,
            window_start=obs.window_start,
            window_end=obs.window_end,
            starts_at=started,
            ends_at=now if status == "resolved" else None,
            labels={
                **rule.labels,
                **_slice_labels(obs.model),
                "model": obs.model,
                "feature": obs.feature,
                "rule": rule.name,
                "severity": rule.severity,
            },
            annotations={k: _render(v, fields) for k, v in rule.annotations.items()},
            receivers=tuple(rule.receivers),
            retrain=rule.retrain,
            explain=obs.explain,
        )


def _slice_labels(model: str) -> dict[str, str]:
    """A slice's alert carries it: ``slice: region=south`` and ``region: south`` (silences match them)."""
    parsed = parse_slice_id(model)
    if parsed is None:
        return {}
    parent, attr, value = parsed
    return {"slice": f"{attr}={value}", attr: value, "parent_model": parent}


def _render(template: str, fields: Mapping[str, Any]) -> str:
    return template.format(**fields)  # cannot fail: every template is rendered once at load (config)
