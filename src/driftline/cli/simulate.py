"""``simulate`` (seeded drifting traffic to files or Kafka) and ``replay`` (a file through the
pushed path, as a backfill)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from driftline.cli._args import (
    UsageError,
    add_kafka_args,
    csv,
    duration,
    kafka_properties,
    print_json,
    service,
    settings,
)

if TYPE_CHECKING:
    from driftline.cli import Command


def register(command: Command) -> None:
    s = command(
        "simulate",
        "generate seeded traffic with drift: to files (--out) or to a Kafka topic (--bootstrap)",
        "driftline simulate --out data      # data/reference.parquet and data/current.parquet\n"
        "  driftline simulate --bootstrap 127.0.0.1:9092 --topic predictions --model churn \\\n"
        "      --events 100000 --drift-at 0.5 --drift-features f00_normal,plan --bad-fraction 0.01",
    )
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", help="directory for reference.parquet and current.parquet (events)")
    dest.add_argument("--bootstrap", help="Kafka bootstrap servers")
    add_kafka_args(s)
    s.add_argument("--topic", default="predictions")
    s.add_argument("--model", default="churn")
    s.add_argument("--events", type=int, default=100_000, help="events (per file with --out)")
    s.add_argument(
        "--rate",
        type=float,
        default=None,
        help="events/s of event time (default 1000); to Kafka also the send rate (default: unthrottled)",
    )
    s.add_argument(
        "--start",
        default=None,
        help="event time of the first event (default: now - events/1000 s; --out: 2026-01-01T00:00:00Z)",
    )
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--drift-at", type=float, default=None, help="fraction of the stream where drift starts")
    s.add_argument("--drift-features", type=csv, default=["f00_normal", "f01_lognormal", "plan"])
    s.add_argument("--fairness-regression", default="region=south", help="ATTR=GROUP, or '' for none")
    s.add_argument("--bad-fraction", type=float, default=0.0, help="fraction of malformed messages")
    s.add_argument(
        "--reference-out", default=None, help="also write a reference file of the undrifted traffic"
    )
    s.set_defaults(run=run_simulate)

    rp = command(
        "replay",
        "backfill history from a file through the same path as live events (event-time windows)",
        "driftline replay --store chdb://$PWD/store --file data/current.parquet --segments region,gender",
    )
    rp.add_argument("--store", required=True)
    rp.add_argument(
        "--file", required=True, help="NDJSON of events, or Parquet/CSV with one column per field"
    )
    rp.add_argument("--segments", type=csv, default=[], help="segment columns (Parquet/CSV)")
    rp.add_argument(
        "--model", default=None, help="model_id of every event (Parquet/CSV; default: its model_id column)"
    )
    rp.add_argument(
        "--warmup-events",
        type=int,
        default=None,
        metavar="N",
        help="a model without a reference gets one fitted on its first N events (default 10000; 0: reject)",
    )
    rp.add_argument("--pane", type=duration, default=60_000)
    rp.add_argument("--window", type=duration, default=3_600_000)
    rp.add_argument("--rules", default=None, help="alerting rules: evaluate windows as they close")
    rp.add_argument("--batch-size", type=int, default=5000)
    rp.add_argument("--json", action="store_true", help="print the totals as JSON")
    rp.set_defaults(run=run_replay)


def run_simulate(args: argparse.Namespace) -> int:
    from driftline.contract import InvalidEvent, parse_ts

    try:
        start_ms = parse_ts(args.start) if args.start else None
    except InvalidEvent as exc:
        raise UsageError(f"--start: {exc.reason}") from None
    return _to_kafka(args, start_ms) if args.bootstrap else _to_files(args, start_ms)


def _to_files(args: argparse.Namespace, start_ms: int | None) -> int:
    from pathlib import Path

    from driftline.simulate import Traffic, generate

    start_ms = Traffic.start_ms if start_ms is None else start_ms
    rate = args.rate or Traffic.rate
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # whole events (ids, model, event time): `replay` backfills them, `compare` skips those columns
    reference = Traffic(n=args.events, seed=args.seed, model_id=args.model, start_ms=start_ms, rate=rate)
    generate(reference).write_parquet(out / "reference.parquet")
    current = Traffic(
        n=args.events,
        seed=args.seed + 1,
        model_id=args.model,
        start_ms=start_ms,
        rate=rate,
        drift_at=0.0 if args.drift_at is None else args.drift_at,
        drift_features=args.drift_features,
        fairness_regression=args.fairness_regression or None,
    )
    generate(current).write_parquet(out / "current.parquet")
    print(f"wrote {out / 'reference.parquet'} and {out / 'current.parquet'} ({args.events} rows each)")
    return 0


def _to_kafka(args: argparse.Namespace, start_ms: int | None) -> int:
    import time

    import numpy as np
    import orjson
    from rich.progress import Progress

    from driftline.ingest.producer import EventProducer
    from driftline.simulate import FILE_DROP, Traffic, bad_message, events, generate

    drifting = args.drift_at is not None
    traffic = Traffic(
        n=args.events,
        seed=args.seed,
        model_id=args.model,
        start_ms=int(time.time() * 1000) - args.events if start_ms is None else start_ms,
        rate=args.rate or 1000.0,
        drift_at=args.drift_at,
        drift_features=args.drift_features,
        fairness_regression=(args.fairness_regression or None) if drifting else None,
    )
    if args.reference_out:
        ref = generate(Traffic(n=max(args.events, 20_000), seed=args.seed + 1000, model_id=args.model))
        ref.drop(FILE_DROP).write_parquet(args.reference_out)
    producer = EventProducer(args.bootstrap, args.topic, kafka_properties(args))
    rng = np.random.default_rng(args.seed + 1)
    bad = 0
    began = time.monotonic()
    with Progress(transient=True) as progress:
        task = progress.add_task(f"producing to {args.topic}", total=args.events)
        for i, event in enumerate(events(generate(traffic))):
            raw = orjson.dumps(event)
            if args.bad_fraction and rng.random() < args.bad_fraction:
                raw, _ = bad_message(rng, raw)
                bad += 1
            producer.send_raw(raw, args.model.encode())
            if args.rate:
                ahead = (i + 1) / args.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
            if i % 1000 == 0:
                progress.update(task, completed=i)
        progress.update(task, completed=args.events)
        delivered = producer.flush()
    print_json(
        {
            "topic": args.topic,
            "model": args.model,
            "delivered": delivered,
            "valid": args.events - bad,
            "malformed": bad,
        }
    )
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from driftline.ingest.files import TableError, replay_messages

    try:
        messages = replay_messages(args.file, args.segments, args.model)
    except TableError as exc:
        raise UsageError(str(exc)) from None
    config = settings(
        store=args.store,
        rules=args.rules,
        pane_ms=args.pane,
        window_ms=args.window,
        warmup_events=args.warmup_events,
    )
    svc = service(config)
    # on a terminal's stderr and gone when done: stdout carries only the totals
    bar = Console(stderr=True)
    try:
        with Progress(console=bar, transient=True, disable=not bar.is_terminal) as progress:
            task = progress.add_task(f"replaying {args.file}", total=len(messages))
            totals = svc.replay(messages, args.batch_size, lambda n: progress.update(task, advance=n))
    finally:
        svc.stop()
    if args.json:
        print_json(totals)
    else:
        print("  ".join(f"{k}={v}" for k, v in totals.items()))
    return 0
