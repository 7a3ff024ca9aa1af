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
from dataclasses import dataclass, field
from typing import Any

from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import Alert
from driftline.alerting.outbox import Entry, Outbox
from driftline.alerting.receivers import Result, Transport, build_requests, deliver

log = logging.getLogger("driftline.alerting")
MAX_AGE_S = 24 * 3600.0  # a notification undeliverable for a day is given up (and recorded)


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


def _key(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:32]


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
                self.outbox.enqueue(Entry(entry_id, receiver, "alert", {"alert": a}, now, now))
        else:
            count = self.outbox.state.sent_count.get(group, 0)
            entry_id = _key(receiver, group, state, count)
            self.outbox.enqueue(Entry(entry_id, receiver, "group", {"alerts": visible}, now, now))
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
        assert a.retrain is not None
        cfg = self.config.receiver(a.retrain).webhook
        assert cfg is not None
        if self._silenced(a.to_dict(), now):
            log.info("retrain of %s skipped: silenced", a.model)
            return
        key = f"{a.retrain}|{a.model}"
        last = self.outbox.state.cooldowns.get(key)
        if last is not None and now - last < cfg.cooldown:
            log.info("retrain of %s skipped: cooldown (%.0fs left)", a.model, cfg.cooldown - (now - last))
            return
        self.outbox.enqueue(
            Entry(
                _key(a.retrain, a.episode, "retrain"), a.retrain, "retrain", {"alert": a.to_dict()}, now, now
            )
        )
        self.outbox.note_cooldown(key, now)


@dataclass
class Sender:
    """Stage 6: send what is due, retry with exponential backoff and jitter, honour Retry-After."""

    config: AlertingConfig
    outbox: Outbox
    transport: Transport
    record: Callable[[Attempt], None] = lambda attempt: None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    max_backoff_s: float = 300.0
    _next_slot: dict[str, float] = field(default_factory=dict)

    def tick(self, now: float) -> int:
        """Attempt every due entry once; returns how many were delivered."""
        delivered = 0
        blocked: set[str] = set()  # per receiver, in enqueue order: a resolve never overtakes its trigger
        for e in self.outbox.in_order():
            if e.receiver in blocked:
                continue
            if e.next_attempt_at > now:
                blocked.add(e.receiver)
                continue
            cfg = next((r for r in self.config.receivers if r.name == e.receiver), None)
            if cfg is None:
                self.outbox.done(e.id, "failed: receiver no longer configured")
                continue
            slot = self._next_slot.get(e.receiver, 0.0)
            if now < slot:  # rate limit (Slack: one message per second per webhook)
                blocked.add(e.receiver)
                continue
            if cfg.slack is not None:
                self._next_slot[e.receiver] = now + cfg.slack.min_interval
            try:
                result = deliver(cfg, build_requests(cfg, e.id, e.kind, e.payload, now), self.transport)
            except Exception as exc:  # a malformed entry must not block everything queued behind it
                log.exception("notification %s to %s cannot be built", e.id, e.receiver)
                result = Result(False, False, None, f"cannot build the request: {type(exc).__name__}: {exc}")
            attempt = e.attempts + 1
            if result.ok:
                outcome = "sent"
                self.outbox.done(e.id, "sent")
                delivered += 1
            elif result.retryable and now - e.created_at < MAX_AGE_S:
                outcome = "retry"
                delay = min(self.max_backoff_s, 2.0**attempt) * (0.5 + self.rng.random() / 2)
                if result.retry_after is not None:
                    delay = max(delay, result.retry_after)
                self.outbox.retry(e.id, now + delay, attempt)
                blocked.add(e.receiver)
            else:
                outcome = "failed"
                self.outbox.done(e.id, f"failed: {result.status} {result.detail[:200]}")
                log.error(
                    "notification %s to %s failed for good: %s %s",
                    e.id,
                    e.receiver,
                    result.status,
                    result.detail,
                )
            self.record(
                Attempt(e.receiver, e.id, e.kind, attempt, outcome, result.status, result.detail[:500], now)
            )
        return delivered
