"""The stages of a group's notification, Alertmanager-style; each one testable alone.

    build_pipeline() = [group, inhibit, silence, dedup, enqueue]

A flush runs them in order on one group: ``GroupStage`` hands on the alerts held in the group
(and, apart from the flush, decides when groups are due), ``InhibitStage`` and ``SilenceStage``
drop muted alerts, ``DedupStage`` stops unless there is something new to tell, ``EnqueueStage``
writes the notifications to the outbox. A stage takes the flush's context and the alerts
handed on by the previous one, and returns the alerts it hands on: ``[]`` means nothing to tell.
Retraining runs (``Retrain``) do not wait for a group: they are queued when an alert fires.

Alerts here are dicts (``Alert.to_dict()``), as the outbox journal holds them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from driftline.alerting.config import AlertingConfig, Grouping
from driftline.alerting.config import Inhibit as InhibitRule
from driftline.alerting.engine import Alert
from driftline.alerting.outbox import Entry, Outbox

log = logging.getLogger("driftline.alerting")
Alerts = list[dict[str, Any]]


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: Mapping[str, str]  # label -> glob
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.starts_at <= now < self.ends_at and all(
            fnmatch.fnmatchcase(labels.get(k, ""), v) for k, v in self.matchers.items()
        )


Silences = Callable[[float], Sequence[Silence]]  # now -> the silences to apply


def _key(*parts: object) -> str:
    """An outbox entry id. It must not change: a journal written earlier replays without repeats."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:32]


def group_key(receiver: str, alert: Alert) -> str:
    """Alerts of one receiver, model and rule are told together."""
    return f"{receiver}|{alert.model}|{alert.rule}"


def retrain_key(receiver: str, model: str) -> str:
    """Whose cooldown a retraining run starts: one per receiver and model."""
    return f"{receiver}|{model}"


def state_hash(alerts: Alerts) -> str:
    """What a notification of ``alerts`` tells: its episodes and their status."""
    return _key(*sorted(f"{a['episode']}:{a['status']}" for a in alerts))


@dataclass(frozen=True)
class FlushContext:
    group: str  # group_key()
    now: float

    @property
    def receiver(self) -> str:
        return self.group.split("|", 1)[0]


class Stage(Protocol):
    def __call__(self, ctx: FlushContext, alerts: Alerts) -> Alerts: ...


def _held(outbox: Outbox, group: str) -> dict[str, dict[str, Any]]:
    return outbox.state.alerts.get(group, {})


def _told(outbox: Outbox, group: str) -> set[str]:
    """Episodes of the group notified as firing."""
    return outbox.state.told.get(group, set())


def _left_out(outbox: Outbox, group: str, alerts: Alerts) -> list[str]:
    """Resolved alerts of the group not among ``alerts`` (silenced, or their firing never told):
    they leave the group with this flush, told or not."""
    told_now = {a["fingerprint"] for a in alerts}
    return [fp for fp, a in _held(outbox, group).items() if a["status"] == "resolved" and fp not in told_now]


@dataclass
class GroupStage:
    """When groups are due: a new group after ``group_wait``, a group's changes after
    ``group_interval`` since its last notification; groups still firing are re-examined every
    ``group_interval`` (a silence may have expired, an inhibiting alert resolved). As a stage it
    hands on the alerts held in the group being flushed."""

    grouping: Grouping
    outbox: Outbox
    _due: dict[str, float] = field(default_factory=dict)  # group -> flush at
    _checked: dict[str, float] = field(default_factory=dict)  # group -> last flushed

    def __post_init__(self) -> None:
        # After a restart every group with alerts is re-examined; dedup stops repeats.
        for group in self.outbox.state.alerts:
            self._due[group] = 0.0

    def add(self, group: str, alert: Alert, now: float) -> None:
        """Holds ``alert`` in its group (journaled), which becomes due if it was not already."""
        self.outbox.note_alert(group, alert.to_dict())
        if group not in self._due:
            notified = self.outbox.state.notified.get(group)
            g = self.grouping
            self._due[group] = (
                now + g.group_wait if notified is None else max(now, notified[1] + g.group_interval)
            )

    def would_hide(self, group: str, alert: Alert) -> bool:
        """True if holding ``alert`` would overwrite a held alert nobody has been told about yet:
        a firing resolved before its group flushed (windows evaluated in a burst), or a resolve
        replaced by the next episode's firing (a flap within group_interval). The group must then
        be flushed first, so every episode is told, trigger then resolve."""
        held = _held(self.outbox, group).get(alert.fingerprint)
        if held is None:
            return False
        if held["status"] == "resolved":  # resolved alerts leave the group once told
            return True
        return alert.status == "resolved" and held["episode"] not in _told(self.outbox, group)

    def due(self, now: float) -> Iterator[str]:
        """The groups to flush now. Each leaves the due list as it is handed out, so the rest stay
        due if flushing one fails."""
        interval = max(self.grouping.group_interval, 1.0)
        for group, alerts in self.outbox.state.alerts.items():
            firing = any(a["status"] == "firing" for a in alerts.values())
            if firing and now >= self._checked.get(group, 0.0) + interval:
                self._due.setdefault(group, now)
        for group in sorted(g for g, at in self._due.items() if at <= now):
            del self._due[group]
            yield group

    def __call__(self, ctx: FlushContext, alerts: Alerts) -> Alerts:
        self._checked[ctx.group] = ctx.now
        return list(_held(self.outbox, ctx.group).values())


@dataclass
class InhibitStage:
    """Drops a firing alert while a firing alert of a rule's source severity, in any group, shares
    its ``equal`` labels."""

    rules: Sequence[InhibitRule]
    outbox: Outbox

    def __call__(self, ctx: FlushContext, alerts: Alerts) -> Alerts:
        return [a for a in alerts if not self.inhibited(a)]

    def inhibited(self, a: dict[str, Any]) -> bool:
        return a["status"] == "firing" and any(
            b["status"] == "firing"
            and b["severity"] == rule.source_severity
            and all(a[k] == b[k] for k in rule.equal)
            for rule in self.rules
            if a["severity"] == rule.target_severity
            for held in self.outbox.state.alerts.values()
            for b in held.values()
        )


@dataclass
class SilenceStage:
    """Drops alerts an active silence matches."""

    silences: Silences

    def __call__(self, ctx: FlushContext, alerts: Alerts) -> Alerts:
        if not alerts:  # silences may come from the store: not asked for nothing
            return alerts
        active = self.silences(ctx.now)
        return [a for a in alerts if not any(s.mutes(a["labels"], ctx.now) for s in active)]


@dataclass
class DedupStage:
    """Hands the alerts on only if they tell something new: a state (episodes and their status)
    not told yet, or the same state still firing ``repeat_interval`` after it was told. A resolve
    is told only if its firing was. When it stops, resolved alerts left out leave the group."""

    repeat_interval: float
    outbox: Outbox

    def __call__(self, ctx: FlushContext, alerts: Alerts) -> Alerts:
        told = _told(self.outbox, ctx.group)
        alerts = [a for a in alerts if a["status"] == "firing" or a["episode"] in told]
        last = self.outbox.state.notified.get(ctx.group)
        firing = any(a["status"] == "firing" for a in alerts)
        told_already = (
            last is not None
            and last[0] == state_hash(alerts)
            and (not firing or ctx.now < last[1] + self.repeat_interval)
        )
        if alerts and not told_already:
            return alerts
        if gone := _left_out(self.outbox, ctx.group, alerts):  # nothing to say about them, ever
            self.outbox.note_forget(ctx.group, gone)
        return []


@dataclass
class EnqueueStage:
    """Writes the notification to the outbox (PagerDuty: one entry per alert; other receivers: one
    for the group) and journals the group as notified."""

    config: AlertingConfig
    outbox: Outbox

    def __call__(self, ctx: FlushContext, alerts: Alerts) -> Alerts:
        if not alerts:
            return alerts
        receiver, group, now = ctx.receiver, ctx.group, ctx.now
        state = state_hash(alerts)
        if self.config.receiver(receiver).kind == "pagerduty":
            for a in alerts:  # one event per alert; the key makes a replay a no-op
                entry_id = _key(receiver, a["episode"], a["status"])
                stream = f"{receiver}|{a['episode']}"  # the resolve waits for its trigger
                self.outbox.enqueue(Entry(entry_id, receiver, "alert", {"alert": a}, now, now, stream=stream))
        else:
            count = self.outbox.state.sent_count.get(group, 0)
            entry_id = _key(receiver, group, state, count)
            self.outbox.enqueue(
                Entry(entry_id, receiver, "group", {"alerts": alerts}, now, now, stream=group)
            )
        sent = [a["fingerprint"] for a in alerts] + _left_out(self.outbox, group, alerts)
        told = [a["episode"] for a in alerts if a["status"] == "firing"]
        self.outbox.note_notified(group, state, now, sent, told=told)
        return alerts


class Pipeline(NamedTuple):
    """The flush stages in order; by name for what runs apart from a flush (GroupStage's timing)."""

    group: GroupStage
    inhibit: InhibitStage
    silence: SilenceStage
    dedup: DedupStage
    enqueue: EnqueueStage


def build_pipeline(config: AlertingConfig, outbox: Outbox, silences: Silences = lambda now: ()) -> Pipeline:
    return Pipeline(
        GroupStage(config.grouping, outbox),
        InhibitStage(config.inhibit, outbox),
        SilenceStage(silences),
        DedupStage(config.grouping.repeat_interval, outbox),
        EnqueueStage(config, outbox),
    )


@dataclass
class Retrain:
    """One retraining run per receiver and model per cooldown. The cooldown starts when the run is
    delivered (Sender); while one is queued, no other."""

    config: AlertingConfig
    outbox: Outbox
    silences: Silences = lambda now: ()

    def __call__(self, a: Alert, now: float) -> bool:
        """Queues a run for the firing alert ``a``; False if skipped."""
        assert a.retrain is not None
        cfg = self.config.receiver(a.retrain).webhook
        assert cfg is not None
        if any(s.mutes(a.labels, now) for s in self.silences(now)):
            log.info("retrain of %s skipped: silenced", a.model)
            return False
        key = retrain_key(a.retrain, a.model)
        queued = any(
            e.kind == "retrain" and retrain_key(e.receiver, e.payload["alert"]["model"]) == key
            for e in self.outbox.in_order()
        )
        if queued:
            log.info("retrain of %s skipped: a run is already queued", a.model)
            return False
        last = self.outbox.state.cooldowns.get(key)
        if last is not None and now - last < cfg.cooldown:
            log.info("retrain of %s skipped: cooldown (%.0fs left)", a.model, cfg.cooldown - (now - last))
            return False
        entry_id = _key(a.retrain, a.episode, "retrain")
        self.outbox.enqueue(
            Entry(entry_id, a.retrain, "retrain", {"alert": a.to_dict()}, now, now, stream=key)
        )
        return True
