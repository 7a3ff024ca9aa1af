"""Alerting against local servers that speak the real formats; time is a fake clock, never slept."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.v1.http import from_http
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import AlertEngine, Observation
from driftline.alerting.outbox import Entry, Outbox
from driftline.alerting.pipeline import Attempt, Dispatcher, Sender, Silence
from driftline.alerting.receivers import http_transport, verify
from driftline.alerting.runner import AlertRunner
from driftline.cli import main
from driftline.storage.alerts import AlertStore
from driftline.storage.rows import MetricRow
from driftline.storage.store import Store

from .receivers import Received, ReceiverServer
from .test_cli_journeys import RFC3339

pytestmark = pytest.mark.loopback
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def config(
    pd: str, slack: str, hook: str, tune: dict[str, dict[str, Any]] | None = None, **grouping: Any
) -> AlertingConfig:
    """Receivers pd, slack and retrain (``tune`` sets more of a receiver's keys), two rules."""
    receivers = [
        {"name": "pd", "pagerduty": {"routing_key": "R0UT1NGKEY", "url": f"{pd}/v2/enqueue"}},
        {"name": "slack", "slack": {"webhook_url": f"{slack}/services/T/B/X", "grafana_url": "http://g"}},
        {"name": "retrain", "webhook": {"url": hook, "secret": SECRET, "cooldown": "24h"}},
    ]
    return AlertingConfig.model_validate(
        {
            "receivers": [r | (tune or {}).get(str(r["name"]), {}) for r in receivers],
            "rules": [
                {
                    "name": "psi",
                    "metric": "psi",
                    "op": ">",
                    "threshold": 0.2,
                    "for": 2,
                    "severity": "critical",
                    "receivers": ["pd", "slack"],
                    "retrain": "retrain",
                    "annotations": {
                        "summary": "PSI {feature} = {value:.2f}",
                        "runbook": "https://runbooks/psi",
                    },
                },
                {
                    "name": "nulls",
                    "metric": "null_rate",
                    "op": ">",
                    "threshold": 0.1,
                    "severity": "warning",
                    "receivers": ["slack"],
                },
            ],
            "grouping": {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h", **grouping},
        }
    )


_window_ends = itertools.count(3_600_000, 60_000)


def obs(feature: str, metric: str, value: float, end: int | None = None) -> Observation:
    """An observation of the next window (each call is a new window, as the stream produces them)."""
    end = next(_window_ends) if end is None else end
    return Observation("churn", "v1", feature, metric, value, None, end - 3_600_000, end)


class Harness:
    def __init__(self, cfg: AlertingConfig, path: Path, clock: Clock) -> None:
        self.cfg, self.path, self.clock = cfg, path, clock
        self.attempts: list[Attempt] = []
        self.silences: list[Silence] = []
        self.client = httpx.Client()
        self.open()

    def open(self) -> None:
        self.outbox = Outbox(self.path)
        self.engine = AlertEngine(self.cfg)
        self.dispatcher = Dispatcher(self.cfg, self.outbox, silences=lambda now: self.silences)
        self.sender = Sender(self.cfg, self.outbox, http_transport(self.client), record=self.attempts.append)

    def window(self, *observations: Observation) -> None:
        self.dispatcher.submit(self.engine.evaluate(observations, self.clock()), self.clock())

    def run(self, seconds: float, step: float = 1.0) -> None:
        end = self.clock() + seconds
        while self.clock() < end:
            self.dispatcher.tick(self.clock())
            self.sender.tick(self.clock())
            self.clock.advance(step)


@pytest.fixture
def servers() -> Iterator[tuple[ReceiverServer, ReceiverServer, ReceiverServer]]:
    with (
        ReceiverServer("pagerduty") as pd,
        ReceiverServer("slack") as slack,
        ReceiverServer("webhook") as hook,
    ):
        yield pd, slack, hook


@pytest.fixture
def h(servers: tuple[ReceiverServer, ...], tmp_path: Path) -> Harness:
    pd, slack, hook = servers
    return Harness(config(pd.url, slack.url, hook.url), tmp_path / "outbox.jsonl", Clock())


def drift_episode(h: Harness) -> None:
    """Two drifting windows (fires on the second: for=2), one more, then recovery."""
    for value in (0.5, 0.6, 0.7):
        h.window(obs("age", "psi", value))
        h.run(60)
    h.window(obs("age", "psi", 0.05))
    h.run(400)


def test_one_trigger_one_resolve_per_episode_with_the_same_dedup_key(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    pd, _, _ = servers
    drift_episode(h)
    events = [r.json for r in pd.accepted]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"]
    trigger = events[0]
    assert trigger["routing_key"] == "R0UT1NGKEY"
    assert trigger["payload"]["summary"] == "PSI age = 0.60"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "driftline/churn"
    assert trigger["links"] == [{"href": "https://runbooks/psi", "text": "runbook"}]
    # a second episode is a new incident
    drift_episode(h)
    keys = [r.json["dedup_key"] for r in pd.accepted]
    assert len(keys) == 4 and keys[2] == keys[3] != keys[0]


def test_slack_messages_are_block_kit_with_links(h: Harness, servers: tuple[ReceiverServer, ...]) -> None:
    _, slack, _ = servers
    drift_episode(h)
    assert len(slack.accepted) == 2  # firing, then resolved
    firing, resolved = (r.json for r in slack.accepted)
    assert firing["text"].startswith("[FIRING:1] psi on churn")
    assert resolved["text"].startswith("[RESOLVED] psi on churn")
    for msg in (firing, resolved):
        assert msg["blocks"][0]["type"] == "header"
        assert (
            msg["blocks"][0]["text"]["type"] == "plain_text" and len(msg["blocks"][0]["text"]["text"]) <= 150
        )
        section = msg["blocks"][1]
        assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
        assert len(section["fields"]) <= 10 and all(f["type"] == "mrkdwn" for f in section["fields"])
        context = msg["blocks"][2]["elements"][0]["text"]
        assert "var-model=churn" in context and "https://runbooks/psi" in context
    assert any("0.6" in f["text"] for f in firing["blocks"][1]["fields"])


def test_retrain_webhook_is_signed_cloudevent_and_respects_cooldown(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    _, _, hook = servers
    drift_episode(h)
    drift_episode(h)  # a second episode within 24 h: cooldown, no second run
    assert len(hook.accepted) == 1
    req = hook.accepted[0]
    Webhook(SECRET).verify(req.body, req.headers)  # independent implementation of the spec
    assert verify(SECRET, req.headers, req.body)
    assert not verify(SECRET, req.headers, req.body + b" ")
    event = from_http(req.headers, req.body)  # the CloudEvents SDK parses it
    assert event["type"] == "io.driftline.retrain.firing"
    assert event["source"] == "/driftline/models/churn"
    assert event["id"] == req.headers["webhook-id"]
    assert event.data["rule"] == "psi" and event.data["feature"] == "age"
    h.clock.advance(25 * 3600)
    drift_episode(h)  # after the cooldown: a new run
    assert len(hook.accepted) == 2


def test_5xx_and_429_are_retried_honouring_retry_after(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    pd, _, _ = servers
    pd.fail_next(2, 500)
    pd.fail_next(1, 429, Retry_After="120")
    h.window(obs("age", "psi", 0.5))
    h.window(obs("age", "psi", 0.5))
    h.run(40)  # group_wait 30 s, then 500, 500 (backoff 1-2 s, 2-4 s), then 429
    assert len(pd.attempts) == 3 and not pd.accepted
    h.run(100)
    assert not pd.accepted  # Retry-After: 120 is honoured
    h.run(60)
    assert len(pd.accepted) == 1
    outcomes = [a.outcome for a in h.attempts if a.receiver == "pd"]
    assert outcomes == ["retry", "retry", "retry", "sent"]
    assert [a.http_status for a in h.attempts if a.receiver == "pd"] == [500, 500, 429, 202]


def test_400_is_not_retried(servers: tuple[ReceiverServer, ...], tmp_path: Path) -> None:
    pd, slack, hook = servers
    cfg = config(pd.url + "/wrong-path", slack.url, hook.url)
    h = Harness(cfg, tmp_path / "o.jsonl", Clock())
    h.window(obs("age", "psi", 0.5))
    h.window(obs("age", "psi", 0.5))
    h.run(120)
    pd_attempts = [a for a in h.attempts if a.receiver == "pd"]
    assert len(pd_attempts) == 1 and pd_attempts[0].outcome == "failed" and pd_attempts[0].http_status == 400
    assert not h.outbox.due(h.clock() + 10**6)


def test_receiver_down_for_ten_minutes_gets_everything_once(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    pd, slack, hook = servers
    for s in servers:
        s.down = True
    h.window(obs("age", "psi", 0.5), obs("income", "psi", 0.4))
    h.window(obs("age", "psi", 0.5), obs("income", "psi", 0.4))
    h.run(600, step=5)
    assert not pd.accepted and not slack.accepted and not hook.accepted
    assert len(pd.attempts) > 4  # it kept trying, with backoff
    for s in servers:
        s.down = False
    h.run(600, step=5)
    assert sorted(r.json["payload"]["component"] for r in pd.accepted) == ["age", "income"]
    assert len(slack.accepted) == 1 and len(hook.accepted) == 1


def test_timeouts_and_resets_are_retried(servers: tuple[ReceiverServer, ...], tmp_path: Path) -> None:
    pd, slack, hook = servers
    cfg = config(pd.url, slack.url, hook.url)
    cfg = cfg.model_copy(update={"receivers": [r.model_copy(update={"timeout": 0.3}) for r in cfg.receivers]})
    h = Harness(cfg, tmp_path / "o.jsonl", Clock())
    pd.slow_next(1, 1.0)
    pd.reset_next(1)
    h.window(obs("age", "psi", 0.5))
    h.window(obs("age", "psi", 0.5))
    h.run(120)
    assert len(pd.accepted) == 1
    details = [a.detail for a in h.attempts if a.receiver == "pd"]
    assert details[0].startswith("timeout") and details[1].startswith("connection failed")


def test_group_wait_batches_and_slack_is_rate_limited(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    _, slack, _ = servers
    h.window(obs("a", "null_rate", 0.3))
    h.clock.advance(10)
    h.window(obs("b", "null_rate", 0.4), obs("c", "null_rate", 0.5))
    h.run(40)
    assert len(slack.accepted) == 1  # three alerts, one message
    assert slack.accepted[0].json["text"].startswith("[FIRING:3] nulls on churn")
    for i in range(5):  # five separate groups due at once: at most one message per second
        h.window(Observation(f"model{i}", "", "x", "null_rate", 0.9, None, 0, next(_window_ends)))
    h.clock.advance(30)  # group_wait
    times: list[float] = []
    for _ in range(40):
        before = len(slack.attempts)
        h.dispatcher.tick(h.clock())
        h.sender.tick(h.clock())
        times += [h.clock()] * (len(slack.attempts) - before)
        h.clock.advance(0.25)
    assert len(times) == 5
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))


def test_inhibition_and_silences(servers: tuple[ReceiverServer, ...], tmp_path: Path) -> None:
    _, slack, _ = servers
    cfg = AlertingConfig.model_validate(
        {
            "receivers": [{"name": "slack", "slack": {"webhook_url": slack.url}}],
            "rules": [
                {
                    "name": "psi-crit",
                    "metric": "psi",
                    "threshold": 0.5,
                    "severity": "critical",
                    "receivers": ["slack"],
                },
                {
                    "name": "psi-warn",
                    "metric": "psi",
                    "threshold": 0.2,
                    "severity": "warning",
                    "receivers": ["slack"],
                },
            ],
            "grouping": {"group_wait": 0, "group_interval": 0},
        }
    )
    h = Harness(cfg, tmp_path / "o.jsonl", Clock())
    h.window(obs("age", "psi", 0.9), obs("income", "psi", 0.3))
    h.run(5)
    texts = sorted(r.json["text"] for r in slack.accepted)
    # age: critical fires and mutes its warning; income: only the warning fires
    assert [t.split(" ")[:2] for t in texts] == [["[FIRING:1]", "psi-crit"], ["[FIRING:1]", "psi-warn"]]
    assert "income" in texts[1] and "age" not in texts[1]
    h.silences.append(Silence("s1", {"model": "churn", "feature": "gen*"}, h.clock(), h.clock() + 3600))
    h.window(obs("gender", "psi", 0.3))
    h.run(5)
    assert len(slack.accepted) == 2  # silenced
    h.clock.advance(3600)
    h.window(obs("gender", "psi", 0.3))
    h.run(5)
    assert len(slack.accepted) == 3 and "gender" in slack.accepted[-1].json["text"]


def test_repeat_interval_renotifies_while_firing(h: Harness, servers: tuple[ReceiverServer, ...]) -> None:
    _, slack, _ = servers
    h.window(obs("a", "null_rate", 0.3))
    h.run(60)
    assert len(slack.accepted) == 1
    h.run(3 * 3600, step=60)
    assert len(slack.accepted) == 1  # same state within 4 h: deduplicated
    h.run(3600 + 300, step=60)  # groups are re-examined every group_interval (5 min)
    assert len(slack.accepted) == 2


def test_restart_resends_pending_with_the_same_keys(h: Harness, servers: tuple[ReceiverServer, ...]) -> None:
    pd, _, hook = servers
    for s in servers:
        s.down = True
    h.window(obs("age", "psi", 0.5))
    h.window(obs("age", "psi", 0.5))
    h.run(40)
    ids_before = sorted(e.id for e in h.outbox.due(h.clock() + 10**6))
    h.outbox.close()
    for s in servers:
        s.down = False
    h.open()  # a new process reading the same journal
    assert sorted(e.id for e in h.outbox.due(h.clock() + 10**6)) == ids_before
    h.run(60)
    assert len(pd.accepted) == 1 and len(hook.accepted) == 1
    assert hook.accepted[0].headers["webhook-id"] in ids_before


def test_pending_does_not_notify_and_engine_state_machine() -> None:
    cfg = AlertingConfig.model_validate(
        {"rules": [{"name": "r", "metric": "ks", "threshold": 0.1, "for": 3}], "receivers": []}
    )
    e = AlertEngine(cfg)
    assert e.evaluate([obs("x", "ks", 0.2)], 1.0) == []
    assert e.evaluate([obs("x", "ks", 0.3)], 2.0) == []
    fired = e.evaluate([obs("x", "ks", 0.4)], 3.0)
    assert [(a.status, a.value, a.starts_at) for a in fired] == [("firing", 0.4, 1.0)]
    assert e.evaluate([obs("x", "ks", 0.5)], 4.0) == []  # still firing
    resolved = e.evaluate([obs("x", "ks", 0.01)], 5.0)
    assert [(a.status, a.ends_at, a.episode) for a in resolved] == [("resolved", 5.0, fired[0].episode)]
    assert e.evaluate([obs("x", "ks", 0.2)], 6.0) == []  # pending again; a blip that goes away says nothing
    assert e.evaluate([obs("x", "ks", 0.0)], 7.0) == []


def test_p_value_rules_use_benjamini_hochberg() -> None:
    cfg = AlertingConfig.model_validate(
        {"rules": [{"name": "p", "metric": "ks_p_value", "op": "<", "threshold": 0.05}], "receivers": []}
    )
    e = AlertEngine(cfg)
    rows = [
        Observation("m", "", f"f{i}", "ks", 0.01, p, 0, 60_000) for i, p in enumerate([0.01, 0.04, 0.5, 0.9])
    ]
    fired = e.evaluate(rows, 1.0)
    # BH: 0.01*4/1 = 0.04 < 0.05 fires; 0.04*4/2 = 0.08 does not (uncorrected it would)
    assert [a.feature for a in fired] == ["f0"]
    assert fired[0].value == pytest.approx(0.04)


def test_staleness_rule_fires_when_a_model_goes_quiet() -> None:
    cfg = AlertingConfig.model_validate(
        {
            "rules": [{"name": "quiet", "metric": "seconds_since_last_event", "threshold": 600}],
            "receivers": [],
        }
    )
    e = AlertEngine(cfg)
    assert e.evaluate_staleness({("churn", "v1"): 1000.0}, now=1500.0) == []
    fired = e.evaluate_staleness({("churn", "v1"): 1000.0}, now=1700.0)
    assert [(a.model, a.value, a.status) for a in fired] == [("churn", 700.0, "firing")]


QUIET = {"name": "quiet", "metric": "seconds_since_last_event", "threshold": 600}


def test_liveness_is_per_model_and_a_model_silent_past_retire_after_stops_paging() -> None:
    e = AlertEngine(AlertingConfig.model_validate({"rules": [QUIET], "staleness": {"retire_after": "1d"}}))
    t = 1_000_000.0
    for hour in range(1, 48):  # v2 replaced v1, which never sends again: the model is alive
        now = t + hour * 3600
        assert e.evaluate_staleness({("churn", "v1"): t, ("churn", "v2"): now - 30}, now) == []
    last = t + 47 * 3600
    seen = {("churn", "v1"): t, ("churn", "v2"): last}
    told = [(k, a) for k in range(1, 300) for a in e.evaluate_staleness(seen, last + k * 600)]
    # the whole model falls silent: it pages once, and resolves when it is retired a day later
    assert [(k, a.status, a.model, a.version) for k, a in told] == [
        (2, "firing", "churn", ""),
        (144, "resolved", "churn", ""),
    ]
    assert told[0][1].episode == told[1][1].episode and told[1][1].ends_at == last + 86_400
    # its events resume: watched again
    back = last + 300 * 600
    assert e.evaluate_staleness({("churn", "v3"): back}, back + 60) == []
    assert [a.status for a in e.evaluate_staleness({("churn", "v3"): back}, back + 700)] == ["firing"]


def test_a_staleness_alert_of_a_replaced_version_resolves() -> None:
    """Alerts from when liveness was per version resolve once the model is seen alive."""
    e = AlertEngine(AlertingConfig.model_validate({"rules": [QUIET], "receivers": []}))
    stale = Observation("churn", "v1", "", "seconds_since_last_event", 5000.0, None, 0, 1)
    (fired,) = e.evaluate([stale], 2000.0)
    (resolved,) = e.evaluate_staleness({("churn", "v1"): 0.0, ("churn", "v2"): 2990.0}, 3000.0)
    assert (resolved.status, resolved.episode, resolved.version) == ("resolved", fired.episode, "v1")
    assert e.evaluate_staleness({("churn", "v1"): 0.0, ("churn", "v2"): 3590.0}, 3600.0) == []


def test_an_episode_resolved_before_its_group_flushed_is_still_told(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    pd, _, _ = servers
    for value in (0.5, 0.6, 0.01):  # three windows evaluated back to back (catching up)
        h.window(obs("age", "psi", value))
    h.run(60)
    assert [r.json["event_action"] for r in pd.accepted] == ["trigger", "resolve"]


def test_a_window_counts_once_towards_for_with_its_latest_value() -> None:
    cfg = AlertingConfig.model_validate(
        {"rules": [{"name": "r", "metric": "psi", "threshold": 0.2, "for": 2}], "receivers": []}
    )
    e = AlertEngine(cfg)
    first = obs("x", "psi", 0.5)
    assert e.evaluate([first], 1.0) == []
    assert e.evaluate([first], 2.0) == []  # a second consumer evaluating the same window: still one
    # recomputed with another member's partials: the latest value replaces the first
    assert e.evaluate([replace(first, value=0.01)], 3.0) == []
    second = obs("x", "psi", 0.5)
    assert e.evaluate([second], 4.0) == []  # one breached window in a row
    # late events make the first window breach again: two in a row now
    assert [a.status for a in e.evaluate([replace(first, value=0.4)], 5.0)] == ["firing"]
    # a recomputation of the newest window that no longer breaches resolves
    assert [a.status for a in e.evaluate([replace(second, value=0.05)], 6.0)] == ["resolved"]
    # an older window computed again (a restart's catch-up) changes nothing while the newest is fine
    assert e.evaluate([replace(first, value=0.9)], 7.0) == []


def test_a_flap_within_group_interval_still_resolves_the_first_incident(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    pd, _, _ = servers
    for value in (0.5, 0.6):  # fires (for: 2)
        h.window(obs("age", "psi", value))
    h.run(60)
    h.window(obs("age", "psi", 0.01))  # resolves ...
    h.clock.advance(5)
    for value in (0.5, 0.6):  # ... and fires again before the group's next flush
        h.window(obs("age", "psi", value))
    h.run(400)
    events = [(r.json["event_action"], r.json["dedup_key"]) for r in pd.accepted]
    assert [a for a, _ in events] == ["trigger", "resolve", "trigger"]
    assert events[0][1] == events[1][1] != events[2][1]


def test_an_entry_that_cannot_be_built_does_not_block_the_queue(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    pd, _, _ = servers
    h.outbox.enqueue(Entry("broken", "pd", "alert", {"alert": {}}, h.clock(), h.clock()))
    h.window(obs("age", "psi", 0.5))
    h.window(obs("age", "psi", 0.5))
    h.run(60)
    assert [a.outcome for a in h.attempts if a.entry_id == "broken"] == ["failed"]
    assert len(pd.accepted) == 1


def trigger_of(component: str) -> Callable[[Received], bool]:
    """Picks the PagerDuty trigger of one feature's alert."""
    return lambda r: r.json.get("payload", {}).get("component") == component


def test_a_failing_notification_dies_at_max_age_and_holds_up_only_its_own_resolve(
    servers: tuple[ReceiverServer, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pd, slack, hook = servers
    cfg = config(pd.url, slack.url, hook.url, tune={"pd": {"max_attempts": 1000, "max_age": "30m"}})
    h = Harness(cfg, tmp_path / "o.jsonl", Clock())
    start = h.clock()
    pd.fail_when(trigger_of("age"))  # the receiver chokes on this one notification, forever
    h.window(obs("age", "psi", 0.5))
    h.window(obs("age", "psi", 0.6))  # fires (for: 2); its trigger is queued at group_wait
    h.run(60)
    h.window(obs("income", "psi", 0.5))
    h.window(obs("income", "psi", 0.6))  # the same receiver, another alert: told at group_interval
    h.run(400)
    assert [r.json["payload"]["component"] for r in pd.accepted] == ["income"]  # not held up
    age_key = next(r.json["dedup_key"] for r in pd.attempts if trigger_of("age")(r))
    h.window(obs("age", "psi", 0.01))  # age resolves while its trigger is still retried
    h.run(1200, step=5)
    assert not any(r.json["event_action"] == "resolve" for r in pd.attempts)  # never before its trigger
    h.run(600, step=5)
    refused = [a for a in h.attempts if a.receiver == "pd" and a.http_status == 500]
    assert [a.outcome for a in refused] == ["retry"] * (len(refused) - 1) + ["failed"]
    assert refused[0].at - start < 60 and refused[-1].at - refused[0].at <= 30 * 60  # max_age bounds it
    assert 10 < len(refused) < 1000
    dead = [r for r in caplog.records if r.levelname == "ERROR" and " is dead after " in r.getMessage()]
    assert len(dead) == 1 and refused[-1].entry_id in dead[0].getMessage()
    # then the rest of its stream goes: the resolve (a no-op for an incident never opened)
    actions = [(r.json["event_action"], r.json["dedup_key"]) for r in pd.attempts]
    assert actions[-1] == ("resolve", age_key)
    assert [a for a, k in actions if k == age_key] == ["trigger"] * len(refused) + ["resolve"]
    assert not h.outbox.due(h.clock() + 10**6)


def test_a_retry_after_beyond_max_age_gives_up_at_once(
    servers: tuple[ReceiverServer, ...], tmp_path: Path
) -> None:
    pd, slack, hook = servers
    h = Harness(config(pd.url, slack.url, hook.url, tune={"pd": {"max_age": "1h"}}), tmp_path / "o", Clock())
    pd.fail_next(1, 503, Retry_After="86400")
    h.window(obs("age", "psi", 0.5))
    h.window(obs("age", "psi", 0.6))
    h.run(60)
    assert [(a.outcome, a.http_status) for a in h.attempts if a.receiver == "pd"] == [("failed", 503)]
    assert not h.outbox.due(h.clock() + 10**6)


def test_retrain_cooldown_starts_when_the_run_is_delivered(
    servers: tuple[ReceiverServer, ...], tmp_path: Path
) -> None:
    pd, slack, hook = servers
    retrain = {"webhook": {"url": hook.url, "secret": SECRET, "cooldown": "1h"}}
    h = Harness(config(pd.url, slack.url, hook.url, tune={"retrain": retrain}), tmp_path / "o", Clock())
    start = h.clock()
    hook.down = True
    drift_episode(h)  # the run is queued; the pipeline is down
    drift_episode(h)  # another episode while the first run is still owed: no second run
    h.run(300, step=5)
    hook.down = False
    h.run(400, step=5)
    assert len(hook.accepted) == 1
    (sent,) = [a for a in h.attempts if a.receiver == "retrain" and a.outcome == "sent"]
    assert sent.at - start > 20 * 60  # delivered 20 minutes after it was queued
    h.clock.advance(start + 3600 + 60 - h.clock())  # an hour after queueing, not after delivery
    drift_episode(h)
    assert len(hook.accepted) == 1  # still cooling down: the run happened less than an hour ago
    h.clock.advance(sent.at + 3600 - h.clock())
    drift_episode(h)
    assert len(hook.accepted) == 2


def test_a_dead_notification_is_counted_and_listed_by_driftline_alerts(
    servers: tuple[ReceiverServer, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pd, slack, hook = servers
    cfg = config(pd.url, slack.url, hook.url, tune={"pd": {"max_attempts": 2}})
    pd.fail_when(lambda r: True, 503)
    dsn = f"chdb://{tmp_path / 'db'}"
    store, clock = Store.open(dsn), Clock()

    def dead_total() -> float:
        return REGISTRY.get_sample_value("driftline_notifications_dead_total", {"receiver": "pd"}) or 0.0

    dead_before = dead_total()
    with httpx.Client() as client:
        service = AlertRunner(cfg, AlertStore(store), tmp_path / "o.jsonl", http_transport(client), clock)
        for end in (60_000, 120_000):  # fires on the second window (for: 2)
            row = MetricRow("churn", "v1", "age", end - 60_000, end, "psi", 0.5, None, 100, 100, "drift")
            service.on_window("churn", "v1", end - 60_000, end, [row])
        for _ in range(120):
            service.tick()
            clock.advance(1)
        service.close()
    store.close()
    assert dead_total() == dead_before + 1
    assert len(pd.attempts) == 2 and len(slack.accepted) == 1  # the other receivers got theirs
    assert main(["alerts", "--store", dsn, "--json"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    (dead,) = [line for line in lines if line["state"] == "dead"]
    assert (dead["receiver"], dead["attempts"], dead["status"], dead["feature"]) == ("pd", 2, "firing", "age")
    assert dead["reason"].startswith("503 ") and RFC3339.fullmatch(dead["at"])
    assert [line["state"] for line in lines if line["state"] != "dead"] == ["firing", "pending"]
    assert main(["alerts", "--store", dsn]) == 0
    table = capsys.readouterr().out
    assert "dead notifications" in table and "503" in table


EXPLAIN = (
    {"bin": "[12.3, 15.0)", "reference_share": 0.1, "current_share": 0.25, "psi": 0.137},
    {"bin": "< 12.3", "reference_share": 0.1, "current_share": 0.04, "psi": 0.055},
)


def assert_explained(pd: ReceiverServer, slack: ReceiverServer, hook: ReceiverServer) -> None:
    """The firing alert's top movers in every wire format; the resolve (feature recovered) has none."""
    trigger = pd.accepted[0].json
    assert trigger["payload"]["custom_details"]["explain"] == list(EXPLAIN)
    firing = slack.accepted[0].json["blocks"][1]["text"]["text"]
    assert firing.splitlines()[-1] == "top movers: [12.3, 15.0) 10%→25%, &lt; 12.3 10%→4%"
    req = hook.accepted[0]
    Webhook(SECRET).verify(req.body, req.headers)
    assert from_http(req.headers, req.body).data["explain"] == list(EXPLAIN)


def test_a_feature_alert_carries_its_top_movers_to_every_receiver(
    h: Harness, servers: tuple[ReceiverServer, ...]
) -> None:
    pd, slack, hook = servers
    for value in (0.5, 0.6):
        h.window(replace(obs("age", "psi", value), explain=EXPLAIN))
        h.run(60)
    h.window(obs("age", "psi", 0.05))  # recovered: not drifted, nothing to explain
    h.run(400)
    assert_explained(pd, slack, hook)
    resolve = pd.accepted[1].json
    assert resolve["event_action"] == "resolve"
    (resolved,) = (r.json for r in slack.accepted[1:])
    assert "top movers" not in resolved["blocks"][1]["text"]["text"]


def test_model_level_alerts_carry_no_explanation(h: Harness, servers: tuple[ReceiverServer, ...]) -> None:
    pd, _, _ = servers
    for value in (0.5, 0.6):  # a model-level row (feature "") has no explanation to carry
        h.window(obs("", "psi", value))
        h.run(60)
    assert "explain" not in pd.accepted[0].json["payload"]["custom_details"]


def test_the_explanation_survives_a_restart_in_the_outbox(
    servers: tuple[ReceiverServer, ...], tmp_path: Path
) -> None:
    """Window rows -> AlertRunner with every receiver down; a new process on the same journal and
    store delivers the notifications with the explanation."""
    pd, slack, hook = servers
    cfg = config(pd.url, slack.url, hook.url)
    store, clock = Store.open(f"chdb://{tmp_path / 'db'}"), Clock()
    for s in servers:
        s.down = True
    with httpx.Client() as client:
        runner = AlertRunner(cfg, AlertStore(store), tmp_path / "o.jsonl", http_transport(client), clock)
        for end in (60_000, 120_000):  # fires on the second window (for: 2)
            row = MetricRow(
                "churn", "v1", "age", end - 60_000, end, "psi", 0.5, None, 100, 100, "drift", EXPLAIN
            )
            runner.on_window("churn", "v1", end - 60_000, end, [row])
        for _ in range(40):
            runner.tick()
            clock.advance(1)
        runner.close()
        assert not any(s.accepted for s in servers)
        for s in servers:
            s.down = False
        runner = AlertRunner(cfg, AlertStore(store), tmp_path / "o.jsonl", http_transport(client), clock)
        assert runner.engine.states and all(
            st.last is not None and st.last.explain == EXPLAIN for st in runner.engine.states.values()
        )  # the engine's stored state has it too
        for _ in range(60):
            runner.tick()
            clock.advance(1)
        runner.close()
    store.close()
    assert_explained(pd, slack, hook)
