"""The notification pipeline, Alertmanager-style: a ``Dispatcher`` runs the stages of
``stages.build_pipeline()`` on each group when it is due, a ``Sender`` delivers what they queued.

    submit(alerts) -> group -> [when due] inhibit -> silence -> dedup -> enqueue (outbox)
    [every tick] send (retry) -> record

Time comes from the caller (``now``), never from sleeping: tests drive it with a fake clock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import Alert
from driftline.alerting.outbox import Entry, Outbox
from driftline.alerting.receivers import Result, Transport, build_requests, deliver
from driftline.alerting.stages import (
    Alerts,
    FlushContext,
    Pipeline,
    Retrain,
    Silence,
    build_pipeline,
    group_key,
    retrain_key,
)
from driftline.links import ReportLinks

log = logging.getLogger("driftline.alerting")


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


@dataclass
class Dispatcher:
    """Holds submitted alerts in their groups and flushes each group through the stages when it is
    due; queues retraining runs as alerts fire."""

    config: AlertingConfig
    outbox: Outbox
    silences: Callable[[float], Sequence[Silence]] = lambda now: ()
    pipeline: Pipeline = field(init=False)
    retrain: Retrain = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = build_pipeline(self.config, self.outbox, self.silences)
        self.retrain = Retrain(self.config, self.outbox, self.silences)

    def submit(self, alerts: Sequence[Alert], now: float) -> None:
        groups = self.pipeline.group
        for a in alerts:
            for receiver in a.receivers:
                group = group_key(receiver, a)
                if groups.would_hide(group, a):
                    self._flush(group, now)
                groups.add(group, a, now)
            if a.retrain and a.status == "firing":
                self.retrain(a, now)

    def tick(self, now: float) -> None:
        for group in self.pipeline.group.due(now):
            self._flush(group, now)

    def _flush(self, group: str, now: float) -> None:
        ctx = FlushContext(group, now)
        alerts: Alerts = []
        for stage in self.pipeline:  # all of them, even on []: dedup forgets resolves never told
            alerts = stage(ctx, alerts)


@dataclass
class Sender:
    """Delivery, after the stages: send what is due, retry with exponential backoff and jitter,
    honour Retry-After, and give an entry up (dead) after its receiver's ``max_attempts`` or
    ``max_age``.

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
    links: ReportLinks | None = None  # the API's public base URL: alerts link their HTML report
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
                result = deliver(
                    cfg, build_requests(cfg, e.id, e.kind, e.payload, now, self.links), self.transport
                )
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
