"""Each alerting stage alone: hand-built alerts, a real outbox, time passed in (a fake clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import Alert, fingerprint
from driftline.alerting.outbox import Outbox
from driftline.alerting.stages import (
    DedupStage,
    EnqueueStage,
    FlushContext,
    GroupStage,
    InhibitStage,
    Retrain,
    Silence,
    SilenceStage,
    build_pipeline,
    state_hash,
)

T0 = 1_800_000_000.0
CFG = AlertingConfig.model_validate(
    {
        "receivers": [
            {"name": "pd", "pagerduty": {"routing_key": "K", "url": "http://pd.invalid/v2/enqueue"}},
            {"name": "slack", "slack": {"webhook_url": "http://slack.invalid/services/T/B/X"}},
            {"name": "rt", "webhook": {"url": "http://hook.invalid", "cooldown": "1h"}},
        ],
        "grouping": {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h"},
    }
)


def alert(
    feature: str,
    status: Literal["firing", "resolved"] = "firing",
    severity: str = "warning",
    rule: str = "psi",
    started: float = T0,
) -> Alert:
    fp = fingerprint(rule, "churn", "v1", feature)
    labels = {"model": "churn", "feature": feature, "rule": rule, "severity": severity}
    return Alert(fp, f"{fp}-{int(started)}", rule, "churn", "v1", feature, "psi", severity, status,
                 0.5, ">", 0.2, 0, 60_000, started, None if status == "firing" else started + 60, labels, {},
                 ("pd", "slack"), "rt")  # fmt: skip


def at(group: str, seconds: float) -> FlushContext:
    return FlushContext(group, T0 + seconds)


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.jsonl")


def test_build_pipeline_returns_the_five_stages_in_order(outbox: Outbox) -> None:
    pipeline = build_pipeline(CFG, outbox)
    assert [type(s).__name__ for s in pipeline] == [
        "GroupStage",
        "InhibitStage",
        "SilenceStage",
        "DedupStage",
        "EnqueueStage",
    ]
    assert pipeline._fields == ("group", "inhibit", "silence", "dedup", "enqueue")


def test_group_is_due_after_group_wait_then_every_group_interval_while_firing(outbox: Outbox) -> None:
    groups, group = GroupStage(CFG.grouping, outbox), "slack|churn|psi"
    groups.add(group, alert("age"), T0)
    groups.add(group, alert("income"), T0 + 10)  # joins the waiting group: no wait of its own
    assert list(groups.due(T0 + 29)) == []
    assert list(groups.due(T0 + 30)) == [group]
    assert [a["feature"] for a in groups(at(group, 30), [])] == ["age", "income"]
    assert list(groups.due(T0 + 31)) == []  # handed out once
    assert list(groups.due(T0 + 329)) == []
    assert list(groups.due(T0 + 330)) == [group]  # still firing: looked at again
    assert list(GroupStage(CFG.grouping, outbox).due(T0 + 331)) == [group]  # a restart: all at once


def test_a_group_told_before_waits_group_interval_and_a_hidden_episode_is_flagged(outbox: Outbox) -> None:
    groups, group = GroupStage(CFG.grouping, outbox), "slack|churn|psi"
    groups.add(group, alert("age"), T0)
    assert groups.would_hide(group, alert("age", "resolved"))  # its firing was never told
    outbox.note_notified(group, "h", T0 + 30, [], told=[alert("age").episode])
    assert not groups.would_hide(group, alert("age", "resolved"))
    list(groups.due(T0 + 30))
    groups.add(group, alert("age", "resolved"), T0 + 100)
    assert list(groups.due(T0 + 329)) == []
    assert list(groups.due(T0 + 330)) == [group]  # group_interval after it was told


def test_inhibit_drops_a_warning_while_a_critical_with_equal_labels_fires(outbox: Outbox) -> None:
    inhibit = InhibitStage(CFG.inhibit, outbox)
    warn_age, warn_income = alert("age").to_dict(), alert("income").to_dict()
    crit_age = alert("age", severity="critical", rule="psi-crit")
    assert inhibit(at("slack|churn|psi", 0), [warn_age, warn_income]) == [warn_age, warn_income]
    outbox.note_alert("pd|churn|psi-crit", crit_age.to_dict())  # another group, another receiver
    assert inhibit(at("slack|churn|psi", 0), [warn_age, warn_income]) == [warn_income]
    resolved_age = alert("age", "resolved").to_dict()
    assert inhibit(at("slack|churn|psi", 0), [resolved_age]) == [resolved_age]  # resolves are told
    assert inhibit(at("pd|churn|psi-crit", 0), [crit_age.to_dict()]) == [crit_age.to_dict()]
    outbox.note_alert("pd|churn|psi-crit", alert("age", "resolved", "critical", "psi-crit").to_dict())
    assert inhibit(at("slack|churn|psi", 0), [warn_age, warn_income]) == [warn_age, warn_income]


def test_silence_drops_matched_alerts_only_while_active() -> None:
    silences = [Silence("s1", {"model": "churn", "feature": "ag*"}, T0, T0 + 3600)]
    asked: list[float] = []
    silence = SilenceStage(lambda now: asked.append(now) or silences)
    age, income = alert("age").to_dict(), alert("income").to_dict()
    assert silence(at("g", -1), [age, income]) == [age, income]  # not yet
    assert silence(at("g", 0), [age, income]) == [income]
    assert silence(at("g", 3599), [alert("age", "resolved").to_dict()]) == []
    assert silence(at("g", 3600), [age, income]) == [age, income]  # expired
    assert silence(at("g", 10), []) == [] and asked == [T0 - 1, T0, T0 + 3599, T0 + 3600]


def test_dedup_stops_a_repeat_before_repeat_interval_and_lets_it_and_a_resolve_through(
    outbox: Outbox,
) -> None:
    dedup, group = DedupStage(CFG.grouping.repeat_interval, outbox), "slack|churn|psi"
    firing = alert("age").to_dict()
    outbox.note_alert(group, firing)
    assert dedup(at(group, 30), [firing]) == [firing]  # never told
    outbox.note_notified(group, state_hash([firing]), T0 + 30, [firing["fingerprint"]], [firing["episode"]])
    assert dedup(at(group, 330), [firing]) == []  # the same, within the hour
    assert dedup(at(group, 3629), [firing]) == []
    assert dedup(at(group, 3630), [firing]) == [firing]  # still firing an hour later: told again
    resolved = alert("age", "resolved").to_dict()
    outbox.note_alert(group, resolved)
    assert dedup(at(group, 400), [resolved]) == [resolved]
    assert outbox.state.alerts[group] == {firing["fingerprint"]: resolved}  # held until told


def test_dedup_forgets_a_resolve_whose_firing_nobody_was_told(outbox: Outbox) -> None:
    dedup, group = DedupStage(CFG.grouping.repeat_interval, outbox), "slack|churn|psi"
    told, untold = alert("age").to_dict(), alert("income", "resolved").to_dict()
    for a in (told, untold):
        outbox.note_alert(group, a)
    outbox.note_notified(group, state_hash([told]), T0, [], [told["episode"]])
    assert dedup(at(group, 60), [told, untold]) == []  # the resolve is dropped; age unchanged
    assert list(outbox.state.alerts[group]) == [told["fingerprint"]]  # income left the group


PD_IDS = ["e1a11db83c27888f30514d697e0f1789", "c2507df96ae88c7abba5ffe68f18a679"]
PD_RESOLVE_ID = "dccbe91f245e9bf623a2a826779d366c"
SLACK_IDS = ["a9445f4b0b7556d224019552336aa45a", "197f103b4f2a0ff6741b7e57b6ef7869"]


def test_enqueue_writes_one_entry_per_alert_for_pagerduty_with_the_ids_of_before(outbox: Outbox) -> None:
    enqueue, group = EnqueueStage(CFG, outbox), "pd|churn|psi"
    alerts = [alert("age").to_dict(), alert("income").to_dict()]
    for a in alerts:
        outbox.note_alert(group, a)
    assert enqueue(at(group, 30), alerts) == alerts
    entries = outbox.in_order()
    assert [(e.id, e.receiver, e.kind, e.payload["alert"]["feature"]) for e in entries] == [
        (PD_IDS[0], "pd", "alert", "age"),
        (PD_IDS[1], "pd", "alert", "income"),
    ]
    assert [e.stream for e in entries] == [f"pd|{a['episode']}" for a in alerts]  # resolve after trigger
    assert outbox.state.notified[group] == (state_hash(alerts), T0 + 30)
    assert outbox.state.told[group] == {a["episode"] for a in alerts}
    resolved = alert("age", "resolved").to_dict()
    outbox.note_alert(group, resolved)
    enqueue(at(group, 400), [resolved, alerts[1]])
    assert [e.id for e in outbox.in_order()][2:] == [PD_RESOLVE_ID]  # income's trigger: the same id
    assert list(outbox.state.alerts[group]) == [alerts[1]["fingerprint"]]  # the told resolve left


def test_enqueue_writes_one_group_entry_for_slack_with_the_ids_of_before(outbox: Outbox) -> None:
    enqueue, group = EnqueueStage(CFG, outbox), "slack|churn|psi"
    alerts = [alert("age").to_dict(), alert("income").to_dict()]
    for a in alerts:
        outbox.note_alert(group, a)
    assert enqueue(at(group, 30), []) == [] and not outbox.in_order()  # nothing to tell
    enqueue(at(group, 30), alerts)
    (entry,) = outbox.in_order()
    assert (entry.id, entry.receiver, entry.kind, entry.stream) == (SLACK_IDS[0], "slack", "group", group)
    assert entry.payload == {"alerts": alerts}
    outbox.note_alert(group, resolved := alert("age", "resolved").to_dict())
    enqueue(at(group, 400), [resolved, alerts[1]])
    assert [e.id for e in outbox.in_order()] == SLACK_IDS
    assert outbox.state.sent_count[group] == 2


def test_retrain_queues_one_run_per_model_and_honours_silences_and_the_cooldown(outbox: Outbox) -> None:
    silences: list[Silence] = []
    retrain = Retrain(CFG, outbox, lambda now: silences)
    silences.append(Silence("s1", {"feature": "age"}, T0, T0 + 60))
    assert not retrain(alert("age"), T0)
    assert retrain(alert("age"), T0 + 60)
    assert not retrain(alert("income", started=T0 + 70), T0 + 70)  # one queued already
    (run,) = outbox.in_order()
    outbox.done(run.id, "sent")
    outbox.note_cooldown("rt|churn", T0 + 100)  # what the Sender journals on delivery
    assert not retrain(alert("income", started=T0 + 200), T0 + 3699)
    assert retrain(alert("income", started=T0 + 200), T0 + 3700)
