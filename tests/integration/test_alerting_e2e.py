"""A drifting stream on the dev broker pages once, fires the retrain webhook once, and resolves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from driftline.cli import main
from driftline.simulate import Traffic
from driftline.storage.alerts import AlertStore
from driftline.storage.store import Store

from ..helpers import SEGMENTS
from ..receivers import ReceiverServer
from .test_stream import START_MS, produce, write_reference

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_drift_episode_pages_once_retrains_once_and_resolves(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(3)
    # 10 minutes of event time; f00_normal drifts from minute 3 to minute 6.
    traffic = Traffic(
        n=6000,
        seed=31,
        start_ms=START_MS,
        rate=10.0,
        drift_at=0.3,
        drift_until=0.6,
        drift_features=["f00_normal"],
    )
    produce(kafka_bootstrap, topic, traffic)
    ref = write_reference(tmp_path / "ref.parquet")
    with ReceiverServer("pagerduty") as pd, ReceiverServer("webhook") as hook:
        rules = tmp_path / "driftline.yaml"
        rules.write_text(f"""
receivers:
  - name: oncall
    pagerduty: {{routing_key: KEY, url: "{pd.url}/v2/enqueue"}}
  - name: retrain
    webhook: {{url: "{hook.url}", secret: "{SECRET}", cooldown: 24h}}
rules:
  - name: psi
    metric: psi
    features: "f00_*"
    threshold: 0.2
    severity: critical
    receivers: [oncall]
    retrain: retrain
grouping: {{group_wait: 0s, group_interval: 0s}}
""")
        dsn = f"chdb://{tmp_path / 'store'}"
        assert (
            main(
                [
                    "consume",
                    "--bootstrap",
                    kafka_bootstrap,
                    "--topic",
                    topic,
                    "--group",
                    "g-e2e",
                    "--store",
                    dsn,
                    "--reference",
                    f"churn={ref}",
                    "--segments",
                    SEGMENTS,
                    "--pane",
                    "60s",
                    "--window",
                    "2m",
                    "--lateness",
                    "0s",
                    "--rules",
                    str(rules),
                    "--idle-exit",
                    "4s",
                ]
            )
            == 0
        )
        events = [r.json for r in pd.accepted]
        assert [e["event_action"] for e in events] == ["trigger", "resolve"]
        assert events[0]["dedup_key"] == events[1]["dedup_key"]
        assert events[0]["payload"]["component"] == "f00_normal"
        assert len(hook.accepted) == 1
        Webhook(SECRET).verify(hook.accepted[0].body, hook.accepted[0].headers)
        assert orjson.loads(hook.accepted[0].body)["type"] == "io.driftline.retrain.firing"
    store = Store.open(dsn)
    try:
        attempts = AlertStore(store).attempts()
        history = AlertStore(store).alert_history("churn")
    finally:
        store.close()
    assert [a[4] for a in attempts] == ["sent", "sent", "sent"]
    assert {h["status"] for h in history} == {"firing", "resolved"}
