"""``alerts`` (state transitions and dead notifications) and ``silence`` (add, list, expire)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from driftline.cli._args import UsageError, duration, open_store, print_json

if TYPE_CHECKING:
    from driftline.cli import Command

ALERT_KEYS = ("at", "state", "status", "rule", "model", "feature", "metric", "value", "threshold", "severity",
              "episode")  # fmt: skip
DEAD_KEYS = (*ALERT_KEYS, "receiver", "attempts", "reason")


def register(command: Command) -> None:
    a = command(
        "alerts",
        "list alert state transitions",
        "driftline alerts --store chdb://$PWD/store --model churn",
    )
    a.add_argument("--store", required=True)
    a.add_argument("--model", default=None)
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true", help="one JSON object per line (NDJSON)")
    a.set_defaults(run=run_alerts)

    si = command(
        "silence",
        "create, list or expire silences (matchers on alert labels: model, feature, rule, severity, ...)",
        "driftline silence add --store chdb://$PWD/store --match model=churn \\\n"
        "      --match feature='age*' --duration 2h --comment 'retraining in progress'",
    )
    si.add_argument("action", choices=["add", "list", "expire"])
    si.add_argument("--store", required=True)
    si.add_argument("--match", action="append", default=[], metavar="LABEL=GLOB")
    si.add_argument("--duration", type=duration, default=3_600_000)
    si.add_argument("--comment", default="")
    si.add_argument("--by", default="cli")
    si.add_argument("--id", default=None, help="silence to expire")
    si.set_defaults(run=run_silence)


def run_alerts(args: argparse.Namespace) -> int:
    from driftline.storage.alerts import AlertStore

    store = open_store(args.store)
    try:
        history = AlertStore(store).alert_history(args.model, args.limit)
    finally:
        store.close()
    if args.json:  # a dead notification adds its receiver, attempts and reason
        for h in history:
            print_json({k: h[k] for k in (DEAD_KEYS if h["state"] == "dead" else ALERT_KEYS)})
    elif history:
        from driftline.report_text import print_alerts

        print_alerts(history)
    else:
        print("no alerts" + (f" for model {args.model!r}" if args.model else ""))
    return 0


def run_silence(args: argparse.Namespace) -> int:
    import time
    import uuid

    from driftline.contract import format_ts
    from driftline.storage.alerts import AlertStore, silence_json

    if args.action == "add":
        matchers = dict(m.split("=", 1) for m in args.match if "=" in m)
        if not matchers or len(matchers) != len(args.match):
            raise UsageError("--match LABEL=GLOB is required (repeatable)")
    store = open_store(args.store)
    alerts = AlertStore(store)
    now = time.time()
    try:
        if args.action == "add":
            sid = uuid.uuid4().hex[:12]
            alerts.save_silence(sid, matchers, now, now + args.duration / 1000, args.comment, args.by)
            print_json({"id": sid, "matchers": matchers, "ends_at": format_ts(now * 1000 + args.duration)})
        elif args.action == "expire":
            found = [s for s in alerts.silences() if s[0] == args.id]
            if not found:
                raise UsageError(f"no silence with id {args.id!r}")
            sid, matchers, start, _, comment, by = found[0]
            alerts.save_silence(sid, matchers, start, now, comment, by)
            print_json({"id": sid, "expired": True})
        else:
            for row in alerts.silences():
                print_json(silence_json(row, now))
    finally:
        store.close()
    return 0
