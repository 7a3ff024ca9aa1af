"""``consume``: Kafka topics into pane sketches in ClickHouse, windows evaluated, alerts sent."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from driftline.cli._args import (
    UsageError,
    add_kafka_args,
    add_threshold_args,
    csv,
    duration,
    given_thresholds,
    kafka_properties,
    print_json,
    service,
    settings,
)
from driftline.detectors.defaults import DEFAULT_SEGMENT_ATTRIBUTES, DEFAULT_SEGMENT_VALUES

if TYPE_CHECKING:
    from driftline.cli import Command


def register(command: Command) -> None:
    k = command(
        "consume",
        "consume events from Kafka into pane sketches in ClickHouse (runs until SIGTERM)",
        "driftline consume --bootstrap 127.0.0.1:9092 --topic predictions --group driftline \\\n"
        "      --store chdb://$PWD/store --reference churn=data/reference.parquet --segments region,gender",
    )
    k.add_argument("--bootstrap", required=True)
    add_kafka_args(k)
    k.add_argument("--topic", type=csv, required=True, help="topic or comma-separated topics")
    k.add_argument("--group", default="driftline")
    k.add_argument(
        "--label-topic",
        default=None,
        help="labels that arrive later ({event_id, model_id, ts, label}): joined to their predictions",
    )
    k.add_argument(
        "--label-horizon", type=duration, default=7 * 86_400_000, help="how long predictions wait for labels"
    )
    k.add_argument("--store", required=True)
    k.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="build and store MODEL's reference from PATH before consuming (repeatable)",
    )
    k.add_argument(
        "--against",
        default=None,
        metavar="KIND",
        help="compare each window with: previous, trailing:7d or seasonal:1w (stored panes on the "
        "reference's bins) instead of the reference (models not registered with their own)",
    )
    k.add_argument(
        "--warmup-events",
        type=int,
        default=None,
        metavar="N",
        help="a model without a reference gets one fitted on its first N events (default 10000; "
        "0: dead-letter its events instead)",
    )
    k.add_argument(
        "--segments",
        type=csv,
        default=[],
        help="segment columns of the --reference files (not features); a registered model uses its own",
    )
    k.add_argument(
        "--slices",
        type=csv,
        default=[],
        metavar="COL[,COL...]",
        help="watch each value of these attributes as a slice (models not registered with their own;"
        " their --reference files are fitted with them)",
    )
    k.add_argument(
        "--segment-values",
        type=int,
        default=DEFAULT_SEGMENT_VALUES,
        help="fairness groups kept per segment attribute: the reference's most frequent values",
    )
    k.add_argument(
        "--segment-attributes",
        type=int,
        default=DEFAULT_SEGMENT_ATTRIBUTES,
        help="segment attributes folded per model (its registered ones, else its reference's)",
    )
    k.add_argument("--pane", type=duration, default=60_000, help="pane length (e.g. 60s, 1m)")
    k.add_argument("--window", type=duration, default=3_600_000, help="drift window length (e.g. 1h)")
    k.add_argument("--lateness", type=duration, default=300_000, help="allowed lateness (e.g. 5m)")
    k.add_argument("--idle", type=duration, default=30_000, help="partition idle timeout for watermarks")
    k.add_argument("--flush-interval", type=duration, default=5_000, help="flush open panes this often")
    k.add_argument("--batch-size", type=int, default=5000)
    k.add_argument("--workers", type=int, default=1, help="group members as threads in this process")
    k.add_argument("--instance-id", default=None, help="static group membership id (fast restarts)")
    k.add_argument("--dlq-suffix", default=".dlq")
    k.add_argument("--ttl-days", type=int, default=90, help="retention of sketches and metrics (new tables)")
    k.add_argument("--idle-exit", type=duration, default=None, help="stop after this long without messages")
    k.add_argument("--rules", default=None, help="alerting rules and receivers (YAML); enables alerting")
    k.add_argument("--outbox", default=None, help="notification journal (default: <store dir>/outbox.jsonl)")
    add_threshold_args(k, " for models not registered (PUT /v1/models/{id})")
    k.set_defaults(run=run_consume)


def run_consume(args: argparse.Namespace) -> int:
    import signal

    from driftline.ingest.kafka import KafkaUnavailable
    from driftline.service import NoReference

    references = {}
    for pair in args.reference:
        model, _, path = pair.partition("=")
        if not model or not path:
            raise UsageError(f"--reference {pair!r}: expected MODEL=PATH")
        references[model] = path
    # --config lends its kafka: section only: everything else of the stream is on the command line
    config = settings(
        kafka=kafka_properties(args),
        store=args.store,
        ttl_days=args.ttl_days,
        bootstrap=args.bootstrap,
        topics=args.topic,
        group=args.group,
        label_topic=args.label_topic,
        label_horizon_ms=args.label_horizon,
        workers=args.workers,
        batch_size=args.batch_size,
        dlq_suffix=args.dlq_suffix,
        instance_id=args.instance_id,
        references=references,
        warmup_events=args.warmup_events,
        against=args.against,
        segments=args.segments,
        slices=args.slices,
        segment_values=args.segment_values,
        segment_attributes=args.segment_attributes,
        pane_ms=args.pane,
        window_ms=args.window,
        lateness_ms=args.lateness,
        idle_ms=args.idle,
        flush_interval_ms=args.flush_interval,
        rules=args.rules,
        outbox=args.outbox,
        **given_thresholds(args),
    )
    svc = service(config)
    signal.signal(signal.SIGTERM, lambda *_: svc.request_stop())
    signal.signal(signal.SIGINT, lambda *_: svc.request_stop())
    try:
        totals = svc.consume(args.idle_exit / 1000 if args.idle_exit else None)
    except (NoReference, KafkaUnavailable) as exc:  # bad credentials or certificates: one line, now
        svc.stop()
        raise UsageError(str(exc)) from None
    print_json(totals)
    return 0
