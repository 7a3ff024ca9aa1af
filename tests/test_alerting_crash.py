"""SIGKILL between enqueue and send, and between send and the 'done' record: nothing is lost, and
every repeat carries the same idempotency key (webhook-id, PagerDuty dedup_key)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from driftline.alerting.config import AlertingConfig
from driftline.alerting.outbox import Outbox
from driftline.alerting.pipeline import Sender
from driftline.alerting.receivers import http_transport

from .receivers import ReceiverServer

pytestmark = pytest.mark.loopback

CHILD = r"""
import os, signal, sys
from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import AlertEngine, Observation
from driftline.alerting.outbox import Outbox
from driftline.alerting.pipeline import Dispatcher, Sender
from driftline.alerting.receivers import http_transport

pd_url, hook_url, journal, moment = sys.argv[1:5]
cfg = AlertingConfig.model_validate(CONFIG)
outbox = Outbox(journal)
engine, dispatcher = AlertEngine(cfg), Dispatcher(cfg, outbox)
obs = [Observation("churn", "v1", "age", "psi", 0.9, None, 0, 3_600_000)]
dispatcher.submit(engine.evaluate(obs, 1000.0), 1000.0)
dispatcher.tick(1000.0)
if moment == "after-enqueue":
    os.kill(os.getpid(), signal.SIGKILL)
send = http_transport()
def send_then_die(req, timeout):
    response = send(req, timeout)
    os.kill(os.getpid(), signal.SIGKILL)  # delivered, but the journal never hears of it
    return response
Sender(cfg, outbox, send_then_die).tick(1000.0)
"""


def config(pd: str, hook: str) -> dict[str, object]:
    return {
        "receivers": [
            {"name": "pd", "pagerduty": {"routing_key": "KEY", "url": f"{pd}/v2/enqueue"}},
            {"name": "hook", "webhook": {"url": hook, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
        ],
        "rules": [{"name": "psi", "metric": "psi", "threshold": 0.2, "receivers": ["pd", "hook"]}],
        "grouping": {"group_wait": 0},
    }


@pytest.mark.parametrize("moment", ["after-enqueue", "after-send"])
def test_sigkill_loses_nothing_and_repeats_carry_the_same_key(moment: str, tmp_path: Path) -> None:
    journal = tmp_path / "outbox.jsonl"
    with ReceiverServer("pagerduty") as pd, ReceiverServer("webhook") as hook:
        cfg = config(pd.url, hook.url)
        child = subprocess.run(
            [sys.executable, "-c", f"CONFIG = {cfg!r}\n" + CHILD, pd.url, hook.url, str(journal), moment],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert child.returncode == -9, child.stderr
        delivered_before = len(pd.accepted) + len(hook.accepted)
        assert delivered_before == (0 if moment == "after-enqueue" else 1)
        # The restarted process: same journal, sends what is still owed.
        outbox = Outbox(journal)
        with httpx.Client() as client:
            Sender(AlertingConfig.model_validate(cfg), outbox, http_transport(client)).tick(2000.0)
        assert not outbox.due(10**12)
        assert len(pd.accepted) >= 1 and len(hook.accepted) >= 1
        assert len({r.json["dedup_key"] for r in pd.accepted}) == 1
        assert len({r.headers["webhook-id"] for r in hook.accepted}) == 1
        # only the message in flight at the kill may arrive twice, and then with the same key
        assert len(pd.accepted) + len(hook.accepted) == 2 + (1 if moment == "after-send" else 0)
