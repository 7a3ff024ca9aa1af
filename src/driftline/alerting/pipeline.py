"""The notification pipeline, Alertmanager-style, as stages you can read top to bottom:

    submit(alerts) -> group -> [tick] inhibit -> silence -> dedup -> outbox -> send (retry) -> record

Time comes from the caller (``now``), never from sleeping: tests drive it with a fake clock.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import Alert
from driftline.alerting.outbox import Entry, Outbox
from driftline.alerting.receivers import Result, Transport, build_requests, deliver

log = logging.getLogger("driftline.alerting")


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


@dataclass(frozen=True)
class Attempt:
    receiver: str
    entry_id: str
    kind: str
    attempt: int
    outcome: str  # sent | retry | failed | deferred
    http_status: int | None
    detail: str
    at: float

    @property
    def reason(self) -> str:
        return self.detail if self.http_status is None else f"{self.http_status} {self.detail}"


def _key(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:32]


def retrain_key(receiver: str, model: str) -> str:
    """Whose cooldown a retraining run starts: one per receiver and model."""
    return f"{receiver}|{model}"


@dataclass
class Dispatcher:
    config: AlertingConfig
    outbox: Outbox
    silences: Callable[[float], Sequence[Silence]] = lambda now: ()
    _due: dict[str, float] = field(default_factory=dict)
    _checked: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # After a restart every group with alerts is re-examined; dedup stops repeats.
        for group in self.outbox.state.alerts:
            self._due[group] = 0.0

    # -- stage 1: group -------------------------------------------------------------------------

    def submit(self, alerts: Sequence[Alert], now: float) -> None:
        g = self.config.grouping
        for a in alerts:
            for receiver in a.receivers:
                group = f"{receiver}|{a.model}|{a.rule}"
                if self._would_hide(group, a):
                    self._checked[group] = now
                    self._flush(group, now)
                self.outbox.note_alert(group, a.to_dict())
                notified = self.outbox.state.notified.get(group)
                if group not in self._due:
                    self._due[group] = (
                        now + g.group_wait if notified is None else max(now, notified[1] + g.group_interval)
                    )
            if a.retrain and a.status == "firing":
                self._retrain(a, now)

    def _would_hide(self, group: str, a: Alert) -> bool:
        """True if recording ``a`` would overwrite a held alert nobody has been told about yet:
        a firing resolved before its group flushed (windows evaluated in a burst), or a resolve
        replaced by the next episode's firing (a flap within group_interval). The group is then
        flushed first, so every episode is told, trigger then resolve."""
        held = self.outbox.state.alerts.get(group, {}).get(a.fingerprint)
        if held is None:
            return False
        if held["status"] == "resolved":  # resolved alerts leave the group once told
            return True
        return a.status == "resolved" and held["episode"] not in self._told(group)

    def tick(self, now: float) -> None:
        # Groups with firing alerts are re-examined every group_interval: a silence may have
        # expired or an inhibiting alert resolved; dedup (and repeat_interval) stop repeats.
        interval = max(self.config.grouping.group_interval, 1.0)
        for group, alerts in self.outbox.state.alerts.items():
            firing = any(a["status"] == "firing" for a in alerts.values())
            if firing and now >= self._checked.get(group, 0.0) + interval:
                self._due.setdefault(group, now)
        for group in sorted(g for g, due in self._due.items() if due <= now):
            del self._due[group]
            self._checked[group] = now
            self._flush(group, now)

    # -- stages 2-5: inhibit, silence, dedup, outbox ------------------------------------------

    def _flush(self, group: str, now: float) -> None:
        receiver = group.split("|", 1)[0]
        alerts = list(self.outbox.state.alerts.get(group, {}).values())
        told = self._told(group)
        visible = [
            a
            for a in alerts
            if not self._inhibited(a)
            and not self._silenced(a, now)
            and (a["status"] == "firing" or a["episode"] in told)
        ]
        state = _key(*sorted(f"{a['episode']}:{a['status']}" for a in visible))
        last = self.outbox.state.notified.get(group)
        firing = any(a["status"] == "firing" for a in visible)
        gone = [a["fingerprint"] for a in alerts if a["status"] == "resolved" and a not in visible]
        if not visible or (
            last and last[0] == state and (not firing or now < last[1] + self.config.grouping.repeat_interval)
        ):
            if gone:  # resolved before anyone was told (silenced, inhibited): nothing to say
                self.outbox.note_forget(group, gone)
            return
        cfg = self.config.receiver(receiver)
        sent = [a["fingerprint"] for a in visible] + gone
        if cfg.kind == "pagerduty":
            for a in visible:  # one event per alert; the key makes a replay a no-op
                entry_id = _key(receiver, a["episode"], a["status"])
                stream = f"{receiver}|{a['episode']}"  # the resolve waits for its trigger
                self.outbox.enqueue(Entry(entry_id, receiver, "alert", {"alert": a}, now, now, stream=stream))
        else:
            count = self.outbox.state.sent_count.get(group, 0)
            entry_id = _key(receiver, group, state, count)
            self.outbox.enqueue(
                Entry(entry_id, receiver, "group", {"alerts": visible}, now, now, stream=group)
            )
        self.outbox.note_notified(
            group, state, now, sent, told=[a["episode"] for a in visible if a["status"] == "firing"]
        )

    def _told(self, group: str) -> set[str]:
        return self.outbox.state.told.get(group, set())

    def _inhibited(self, a: dict[str, Any]) -> bool:
        if a["status"] != "firing":
            return False
        for rule in self.config.inhibit:
            if a["severity"] != rule.target_severity:
                continue
            for alerts in self.outbox.state.alerts.values():
                for b in alerts.values():
                    if (
                        b["status"] == "firing"
                        and b["severity"] == rule.source_severity
                        and all(a[k] == b[k] for k in rule.equal)
                    ):
                        return True
        return False

    def _silenced(self, a: dict[str, Any], now: float) -> bool:
        return any(s.mutes(a["labels"], now) for s in self.silences(now))

    # -- retraining: one run per model per cooldown ---------------------------------------------

    def _retrain(self, a: Alert, now: float) -> None:
        """The cooldown starts when the run is delivered (Sender); while one is queued, no other."""
        assert a.retrain is not None
        cfg = self.config.receiver(a.retrain).webhook
        assert cfg is not None
        if self._silenced(a.to_dict(), now):
            log.info("retrain of %s skipped: silenced", a.model)
            return
        key = retrain_key(a.retrain, a.model)
        queued = any(
            e.kind == "retrain" and retrain_key(e.receiver, e.payload["alert"]["model"]) == key
            for e in self.outbox.in_order()
        )
        if queued:
            log.info("retrain of %s skipped: a run is already queued", a.model)
            return
        last = self.outbox.state.cooldowns.get(key)
        if last is not None and now - last < cfg.cooldown:
            log.info("retrain of %s skipped: cooldown (%.0fs left)", a.model, cfg.cooldown - (now - last))
            return
        entry_id = _key(a.retrain, a.episode, "retrain")
        self.outbox.enqueue(
            Entry(entry_id, a.retrain, "retrain", {"alert": a.to_dict()}, now, now, stream=key)
        )


@dataclass
class Sender:
    """Stage 6: send what is due, retry with exponential backoff and jitter, honour Retry-After,
    and give an entry up (dead) after its receiver's ``max_attempts`` or ``max_age``.

    Order holds per stream: a PagerDuty resolve waits for its trigger, a group's messages go in
    sequence. A failing entry holds up only its own stream, so other alerts to the receiver keep
    flowing; once it is dead, the rest of its stream goes (the resolve of a dead trigger is still
    sent: the trigger may have arrived before a timeout, and a resolve of an unknown incident is a
    no-op for PagerDuty)."""

    config: AlertingConfig
    outbox: Outbox
    transport: Transport
    record: Callable[[Attempt], None] = lambda attempt: None
    on_dead: Callable[[Entry, Attempt], None] = lambda entry, attempt: None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    max_backoff_s: float = 300.0
    _next_slot: dict[str, float] = field(default_factory=dict)  # receiver -> not before

    def tick(self, now: float) -> int:
        """Attempt every due entry once; returns how many were delivered."""
        delivered = 0
        held: set[str] = set()  # streams with an earlier entry still owed
        failing: set[str] = set()  # receivers that failed in this tick: left alone until the next
        for e in self.outbox.in_order():
            stream = e.stream or e.receiver
            if stream in held or e.receiver in failing:
                held.add(stream)
                continue
            if now < max(e.next_attempt_at, self._next_slot.get(e.receiver, 0.0)):
                held.add(stream)  # backing off, Retry-After, or the rate limit (Slack: 1/s)
                continue
            cfg = next((r for r in self.config.receivers if r.name == e.receiver), None)
            if cfg is None:
                attempt = Attempt(e.receiver, e.id, e.kind, e.attempts, "failed", None,
                                  "receiver no longer configured", now)  # fmt: skip
                self.record(attempt)
                self._give_up(e, attempt)
                continue
            if cfg.slack is not None:
                self._next_slot[e.receiver] = now + cfg.slack.min_interval
            try:
                result = deliver(cfg, build_requests(cfg, e.id, e.kind, e.payload, now), self.transport)
            except Exception as exc:  # a malformed entry must not block everything queued behind it
                log.exception("notification %s to %s cannot be built", e.id, e.receiver)
                result = Result(False, False, None, f"cannot build the request: {type(exc).__name__}: {exc}")
            n = e.attempts + 1
            if result.ok:
                outcome = "sent"
                if e.kind == "retrain":  # the cooldown starts now that the run is triggered
                    self.outbox.note_cooldown(retrain_key(e.receiver, e.payload["alert"]["model"]), now)
                self.outbox.done(e.id, "sent")
                delivered += 1
            else:
                if result.retryable:
                    failing.add(e.receiver)
                deadline = e.created_at + cfg.max_age
                # Backoff with jitter; the last attempt falls on the deadline.
                retry_at = min(
                    now + min(self.max_backoff_s, 2.0**n) * (0.5 + self.rng.random() / 2), deadline
                )
                if result.retry_after is not None:  # the receiver's word holds for all that is sent to it
                    retry_at = max(retry_at, now + result.retry_after)
                    slot = self._next_slot.get(e.receiver, 0.0)
                    self._next_slot[e.receiver] = max(slot, now + result.retry_after)
                if result.retryable and n < cfg.max_attempts and now < retry_at <= deadline:
                    outcome = "retry"
                    self.outbox.retry(e.id, retry_at, n)
                    held.add(stream)
                else:  # refused for good, out of attempts, or asked to wait past the deadline
                    outcome = "failed"
            attempt = Attempt(e.receiver, e.id, e.kind, n, outcome, result.status, result.detail[:500], now)
            self.record(attempt)
            if outcome == "failed":
                self._give_up(replace(e, attempts=n), attempt)
        return delivered

    def _give_up(self, e: Entry, attempt: Attempt) -> None:
        self.outbox.dead(e.id, attempt.reason[:200])
        log.error(
            "notification %s (%s) to %s is dead after %d attempt(s) in %.0f s: %s",
            e.id,
            e.kind,
            e.receiver,
            e.attempts,
            attempt.at - e.created_at,
            attempt.reason,
        )
        self.on_dead(e, attempt)
