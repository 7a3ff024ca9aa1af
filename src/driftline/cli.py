"""The ``driftline`` command line. Settings and I/O are resolved here and passed down."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from driftline.detectors.defaults import (
    DEFAULT_FINE_BINS,
    DEFAULT_PSI_BINS,
    DEFAULT_SEGMENT_ATTRIBUTES,
    DEFAULT_SEGMENT_VALUES,
)


class UsageError(Exception):
    """A problem with the command's input: printed as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from driftline import logs

    logs.setup(args.log_level or "WARNING")
    try:
        return int(args.run(args) or 0)
    except UsageError as exc:
        print(f"driftline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        # The interpreter's last collection walks every object numba and polars created: ≈0.2 s
        # of a short command such as compare. Nothing is left to collect, so skip it.
        gc.freeze()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftline", description="Model monitoring and drift detection.")
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="WARNING unless given (serve: its log_level setting); also after the command",
    )
    # the same option after the command; SUPPRESS keeps the value given before it when absent
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    c = command(
        "compare",
        "compare a current data set with a reference (Parquet/CSV/NDJSON)",
        "driftline compare --reference train.parquet --current today.parquet \\\n"
        "      --segments region,gender --prediction score --label label --latency latency_ms --json",
    )
    c.add_argument("--reference", required=True, help="reference data (.parquet, .csv, .tsv, .ndjson)")
    c.add_argument("--current", required=True, help="current data, same columns")
    _add_table_args(c)
    _add_threshold_args(c)
    c.add_argument("--json", action="store_true", help="print one JSON document")
    _add_fail_on_drift(c)
    c.set_defaults(run=_compare)

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
    _add_kafka_args(s)
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
    s.add_argument("--drift-features", type=_csv, default=["f00_normal", "f01_lognormal", "plan"])
    s.add_argument("--fairness-regression", default="region=south", help="ATTR=GROUP, or '' for none")
    s.add_argument("--bad-fraction", type=float, default=0.0, help="fraction of malformed messages")
    s.add_argument(
        "--reference-out", default=None, help="also write a reference file of the undrifted traffic"
    )
    s.set_defaults(run=_simulate)

    r = command(
        "reference",
        "build a model's reference from a file and store it",
        "driftline reference build --store chdb://$PWD/store --model churn --file data/reference.parquet \\\n"
        "      --segments region,gender --prediction prediction --label label --latency latency_ms",
    )
    r.add_argument("action", choices=["build"], help="build: fit bins on the file and store them")
    r.add_argument("--store", required=True, help="chdb:///dir or http(s)://user:pass@host:8123/db")
    r.add_argument("--model", required=True)
    r.add_argument("--file", required=True)
    _add_table_args(r)
    r.set_defaults(run=_reference)

    k = command(
        "consume",
        "consume events from Kafka into pane sketches in ClickHouse (runs until SIGTERM)",
        "driftline consume --bootstrap 127.0.0.1:9092 --topic predictions --group driftline \\\n"
        "      --store chdb://$PWD/store --reference churn=data/reference.parquet --segments region,gender",
    )
    k.add_argument("--bootstrap", required=True)
    _add_kafka_args(k)
    k.add_argument("--topic", type=_csv, required=True, help="topic or comma-separated topics")
    k.add_argument("--group", default="driftline")
    k.add_argument("--store", required=True)
    k.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="build and store MODEL's reference from PATH before consuming (repeatable)",
    )
    k.add_argument(
        "--segments",
        type=_csv,
        default=[],
        help="segment columns of the --reference files (not features); default: the model's registered ones",
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
    k.add_argument("--pane", type=_duration, default=60_000, help="pane length (e.g. 60s, 1m)")
    k.add_argument("--window", type=_duration, default=3_600_000, help="drift window length (e.g. 1h)")
    k.add_argument("--lateness", type=_duration, default=300_000, help="allowed lateness (e.g. 5m)")
    k.add_argument("--idle", type=_duration, default=30_000, help="partition idle timeout for watermarks")
    k.add_argument("--flush-interval", type=_duration, default=5_000, help="flush open panes this often")
    k.add_argument("--batch-size", type=int, default=5000)
    k.add_argument("--workers", type=int, default=1, help="group members as threads in this process")
    k.add_argument("--instance-id", default=None, help="static group membership id (fast restarts)")
    k.add_argument("--dlq-suffix", default=".dlq")
    k.add_argument("--ttl-days", type=int, default=90, help="retention of sketches and metrics (new tables)")
    k.add_argument("--idle-exit", type=_duration, default=None, help="stop after this long without messages")
    k.add_argument("--rules", default=None, help="alerting rules and receivers (YAML); enables alerting")
    k.add_argument("--outbox", default=None, help="notification journal (default: <store dir>/outbox.jsonl)")
    _add_threshold_args(k, " for models not registered (PUT /v1/models/{id})")
    k.set_defaults(run=_consume)

    t = command(
        "stats",
        "merge stored pane sketches over a time range and compare with the model's reference",
        "driftline stats --store chdb://$PWD/store --model churn \\\n"
        "      --from 2026-01-01T00:00:00Z --to 2026-01-01T06:00:00Z --json",
    )
    t.add_argument("--store", required=True)
    t.add_argument("--model", required=True)
    t.add_argument("--version", default=None, help="model version (default: all versions)")
    t.add_argument("--from", dest="start", default=None, help="RFC 3339 or epoch ms (default: beginning)")
    t.add_argument("--to", dest="end", default=None, help="RFC 3339 or epoch ms, exclusive (default: now)")
    _add_threshold_args(t, " unless the model registered its own")
    t.add_argument("--json", action="store_true")
    _add_fail_on_drift(t)
    t.set_defaults(run=_stats)

    sv = command(
        "serve",
        "run the service: Kafka consumers (with --bootstrap), HTTP API and ingest, alerting",
        "driftline serve --config driftline.yaml     # settings in its 'service:' section or DRIFTLINE_* env",
    )
    sv.add_argument("--config", default=None, help="driftline.yaml: 'service:' settings, receivers and rules")
    sv.add_argument("--store", default=None, help="chdb:///dir or http(s)://user:pass@host:8123/db")
    sv.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (none: HTTP ingest only)")
    _add_kafka_args(sv, with_config=False)
    sv.add_argument("--topic", type=_csv, default=None)
    sv.add_argument("--host", default=None)
    sv.add_argument("--port", type=int, default=None)
    sv.add_argument("--open", action="store_true", help="no API keys (open mode): only on a trusted network")
    sv.set_defaults(run=_serve)

    rp = command(
        "replay",
        "backfill history from a file through the same path as live events (event-time windows)",
        "driftline replay --store chdb://$PWD/store --file data/current.parquet --segments region,gender",
    )
    rp.add_argument("--store", required=True)
    rp.add_argument(
        "--file", required=True, help="NDJSON of events, or Parquet/CSV with one column per field"
    )
    rp.add_argument("--segments", type=_csv, default=[], help="segment columns (Parquet/CSV)")
    rp.add_argument(
        "--model", default=None, help="model_id of every event (Parquet/CSV; default: its model_id column)"
    )
    rp.add_argument("--pane", type=_duration, default=60_000)
    rp.add_argument("--window", type=_duration, default=3_600_000)
    rp.add_argument("--rules", default=None, help="alerting rules: evaluate windows as they close")
    rp.add_argument("--batch-size", type=int, default=5000)
    rp.add_argument("--json", action="store_true", help="print the totals as JSON")
    rp.set_defaults(run=_replay)

    dm = command(
        "demo",
        "the whole product in one process: drifting traffic -> detectors -> chDB -> alerts to a local sink",
        "driftline demo",
    )
    dm.add_argument("--dir", default=None, help="keep the store and files here (default: a temp dir)")
    dm.add_argument("--keep", action="store_true", help="keep the temp dir at exit (default: remove it)")
    dm.add_argument("--keep-running", action="store_true", help="keep serving the API after the demo")
    dm.add_argument(
        "--kafka", action="store_true", help="feed through a dev Kafka broker (scripts/kafka-dev)"
    )
    dm.set_defaults(run=_demo)

    a = command(
        "alerts",
        "list alert state transitions",
        "driftline alerts --store chdb://$PWD/store --model churn",
    )
    a.add_argument("--store", required=True)
    a.add_argument("--model", default=None)
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true", help="one JSON object per line (NDJSON)")
    a.set_defaults(run=_alerts)

    si = command(
        "silence",
        "create, list or expire silences (matchers on alert labels: model, feature, rule, severity, ...)",
        "driftline silence add --store chdb://$PWD/store --match model=churn \\\n"
        "      --match feature='age*' --duration 2h --comment 'retraining in progress'",
    )
    si.add_argument("action", choices=["add", "list", "expire"])
    si.add_argument("--store", required=True)
    si.add_argument("--match", action="append", default=[], metavar="LABEL=GLOB")
    si.add_argument("--duration", type=_duration, default=3_600_000)
    si.add_argument("--comment", default="")
    si.add_argument("--by", default="cli")
    si.add_argument("--id", default=None, help="silence to expire")
    si.set_defaults(run=_silence)

    cf = command(
        "config",
        "validate a driftline.yaml as serve would and print its effective settings, secrets masked",
        "KAFKA_PASSWORD=... driftline config check driftline.yaml   # reference: docs/configuration.md",
    )
    cf.add_argument("action", choices=["check"], help="check: validate every section, print the result")
    cf.add_argument("file", help="driftline.yaml")
    cf.set_defaults(run=_config)
    return p


def _add_kafka_args(c: argparse.ArgumentParser, with_config: bool = True) -> None:
    if with_config:
        c.add_argument("--config", default=None, help="driftline.yaml: its kafka: section is used")
    c.add_argument(
        "--kafka-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka property for every Kafka client, e.g. security.protocol=SASL_SSL;"
        " VALUE may be ${env:NAME} or ${file:PATH} (repeatable; wins over the file and the config)",
    )
    c.add_argument(
        "--kafka-config-file",
        default=None,
        metavar="PATH",
        help="librdkafka properties, one key=value per line (a Kafka client.properties)",
    )


def _kafka_properties(args: argparse.Namespace) -> dict[str, object]:
    """The kafka: section of --config, then --kafka-config-file, then --kafka-config."""
    from driftline.alerting.config import ConfigError
    from driftline.settings import kafka_overrides, load_settings

    try:
        extra = kafka_overrides(args.kafka_config_file, args.kafka_config)
        if getattr(args, "config", None):
            return dict(load_settings(args.config, extra).kafka)
        return dict(extra)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _add_table_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("--features", type=_csv, default=None, help="feature columns (default: all others)")
    c.add_argument("--exclude", type=_csv, default=[], help="columns that are not features")
    c.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="COL=numeric|categorical",
        help="override an inferred feature kind (repeatable)",
    )
    c.add_argument(
        "--segments",
        type=_csv,
        default=[],
        help="segment columns for fairness (reference build: default, the model's registered ones)",
    )
    c.add_argument("--prediction", help="prediction column (score or class)")
    c.add_argument("--label", help="label column")
    c.add_argument("--latency", help="latency column in milliseconds")
    c.add_argument("--positive-threshold", type=float, default=0.5, help="score >= this is positive")
    c.add_argument("--positive-class", default="1", help="class value counted as positive")
    c.add_argument("--bins", type=int, default=DEFAULT_FINE_BINS, help="fine bins per numeric feature")
    c.add_argument("--psi-bins", type=int, default=DEFAULT_PSI_BINS)


def _add_fail_on_drift(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--fail-on-drift", action="store_true", help="exit 1 when any feature drifted (to gate a pipeline)"
    )


def _add_threshold_args(c: argparse.ArgumentParser, note: str = "") -> None:
    """Thresholds left out are the defaults, or a model's registered ones (as ``note`` says)."""
    c.add_argument("--psi-threshold", type=float, default=None, help=f"default 0.2{note}")
    c.add_argument("--ks-threshold", type=float, default=None, help=f"default 0.1{note}")
    c.add_argument(
        "--min-support", type=int, default=None, help=f"fairness: smallest group compared (30{note})"
    )


def _duration(text: str) -> int:
    """'90s', '5m', '1h', '250ms' or plain milliseconds -> milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(suffix)]) * units[suffix])
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 250ms, 30s, 5m, 1h")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _kinds(pairs: list[str]) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    for pair in pairs:
        name, _, kind = pair.partition("=")
        if kind not in ("numeric", "categorical"):
            raise UsageError(f"--kind {pair!r}: expected COLUMN=numeric or COLUMN=categorical")
        kinds[name] = kind
    return kinds


def _compare(args: argparse.Namespace) -> int:
    from driftline.ingest.compare import compare_files
    from driftline.ingest.files import TableError

    spec = _table_spec(args)
    try:
        report = compare_files(
            args.reference, args.current, spec, args.bins, args.psi_bins, _thresholds(args)
        )
    except (TableError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return _print_report(report, args)


def _print_report(report: dict[str, Any], args: argparse.Namespace) -> int:
    """Prints the report; the exit code is 1 when asked to fail on drift and a feature drifted."""
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        from driftline.report_text import print_report

        print_report(report)
    return 1 if args.fail_on_drift and report["drifted_features"] else 0


def _table_spec(args: argparse.Namespace) -> Any:
    from driftline.ingest.files import TableSpec

    return TableSpec(
        features=args.features,
        exclude=args.exclude,
        kinds=_kinds(args.kind),
        segments=args.segments,
        prediction=args.prediction,
        label=args.label,
        latency=args.latency,
        positive_threshold=args.positive_threshold,
        positive_class=args.positive_class,
    )


def _simulate(args: argparse.Namespace) -> int:
    if not args.out:
        return _simulate_kafka(args)
    from driftline.contract import InvalidEvent, parse_ts
    from driftline.simulate import Traffic, generate

    try:
        start_ms = parse_ts(args.start) if args.start else Traffic.start_ms
    except InvalidEvent as exc:
        raise UsageError(f"--start: {exc.reason}") from None
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


def _simulate_kafka(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    from rich.progress import Progress

    from driftline.contract import parse_ts
    from driftline.ingest.producer import EventProducer
    from driftline.simulate import FILE_DROP, Traffic, bad_message, events, generate

    now_ms = int(time.time() * 1000)
    start = parse_ts(args.start) if args.start else now_ms - args.events
    traffic = Traffic(
        n=args.events,
        seed=args.seed,
        model_id=args.model,
        start_ms=start,
        rate=args.rate or 1000.0,
        drift_at=args.drift_at,
        drift_features=args.drift_features,
        fairness_regression=_regression(args),
    )
    if args.reference_out:
        ref = generate(Traffic(n=max(args.events, 20_000), seed=args.seed + 1000, model_id=args.model))
        ref.drop(FILE_DROP).write_parquet(args.reference_out)
    producer = EventProducer(args.bootstrap, args.topic, _kafka_properties(args))
    rng = np.random.default_rng(args.seed + 1)
    bad = 0
    began = time.monotonic()
    import orjson

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
    print(
        orjson.dumps(
            {
                "topic": args.topic,
                "model": args.model,
                "delivered": delivered,
                "valid": args.events - bad,
                "malformed": bad,
            }
        ).decode()
    )
    return 0


def _regression(args: argparse.Namespace) -> str | None:
    return (args.fairness_regression or None) if args.drift_at is not None else None


def _open_store(dsn: str, ttl_days: int = 90) -> Any:
    from driftline.storage.store import Store, StoreError

    try:
        return Store.open(dsn, ttl_days=ttl_days)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def _reference(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from driftline.ingest.files import TableError, load_reference
    from driftline.storage.codec import reference_id, reference_rows, registered

    store = _open_store(args.store)
    spec = _table_spec(args)
    if not spec.segments:  # the model's registered segment columns
        model = registered(store).get(args.model)
        spec = replace(spec, segments=list(model.segments) if model else [])
    try:
        reference, kinds = load_reference(args.file, spec, args.bins, args.psi_bins)
    except (TableError, ValueError) as exc:
        store.close()
        raise UsageError(str(exc)) from None
    store.save_reference(reference_rows(args.model, reference, source=str(args.file)))
    print(
        orjson.dumps(
            {
                "model": args.model,
                "reference_id": reference_id(reference.binning),
                "rows": reference.n_events,
                "features": kinds,
            }
        ).decode()
    )
    store.close()
    return 0


def _references(store: Any) -> dict[str, Any]:
    from driftline.service import References

    refs = References()
    refs.reload(store)
    return refs


def _thresholds(args: argparse.Namespace, base: Any = None) -> Any:
    """The thresholds given as options, the others from ``base`` (a model's registered ones)."""
    from dataclasses import replace

    from driftline.detectors.profile import Thresholds

    given = {"psi": args.psi_threshold, "ks": args.ks_threshold, "min_support": args.min_support}
    return replace(base or Thresholds(), **{k: v for k, v in given.items() if v is not None})


def _consume(args: argparse.Namespace) -> int:
    import signal
    import threading

    from driftline.detectors.profile import ModelRegistry, ModelSettings, SegmentLimits
    from driftline.ingest.consumer import ConsumerConfig, StreamConsumer, ensure_topics
    from driftline.ingest.evaluate import WindowEvaluator
    from driftline.ingest.files import TableError, TableSpec, load_reference
    from driftline.ingest.kafka import KafkaUnavailable
    from driftline.ingest.panes import WindowSpec
    from driftline.storage.codec import reference_rows, registered

    store = _open_store(args.store, args.ttl_days)
    # registered models (PUT /v1/models/{id}) use their settings; the options are the others'
    models = ModelRegistry(
        ModelSettings(_thresholds(args)), SegmentLimits(args.segment_values, args.segment_attributes)
    )
    models.update(registered(store))
    for pair in args.reference:
        model, _, path = pair.partition("=")
        if not model or not path:
            raise UsageError(f"--reference {pair!r}: expected MODEL=PATH")
        spec = TableSpec(
            prediction="prediction",
            label="label",
            latency="latency_ms",
            segments=args.segments or list(models[model].segments),
            exclude=[],
        )
        try:
            reference, _ = load_reference(path, _spec_for(path, spec), DEFAULT_FINE_BINS, DEFAULT_PSI_BINS)
        except TableError as exc:
            raise UsageError(str(exc)) from None
        store.save_reference(reference_rows(model, reference, source=path))
    references = _references(store)
    if not references:
        raise UsageError(
            "no model has a reference: pass --reference MODEL=PATH or run 'driftline reference build'"
        )
    config = ConsumerConfig(
        bootstrap=args.bootstrap,
        topics=args.topic,
        group=args.group,
        windows=WindowSpec(args.pane, args.window, args.lateness, args.idle),
        dlq_suffix=args.dlq_suffix,
        batch_size=args.batch_size,
        flush_interval_s=args.flush_interval / 1000,
        instance_id=args.instance_id,
        dlq_spill=store.local_dir / "dead-letters.jsonl",
        kafka=_kafka_properties(args),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    idle = args.idle_exit / 1000 if args.idle_exit else None
    try:
        ensure_topics(config)  # bad credentials or certificates: one line and exit 2, now
    except KafkaUnavailable as exc:
        raise UsageError(str(exc)) from None
    alerting = _alert_service(args, store, models)
    on_window = alerting.on_window if alerting else None
    evaluator = WindowEvaluator(store, references, config.windows, models, on_window)
    members = [
        StreamConsumer(
            config, store, references, on_window=on_window, name=f"consumer-{i}", evaluator=evaluator
        )
        for i in range(args.workers)
    ]
    threads = [threading.Thread(target=m.run, args=(stop, idle), daemon=True) for m in members]
    for th in threads:
        th.start()
    alert_stop = threading.Event()
    alert_thread = (
        threading.Thread(target=alerting.run, args=(alert_stop,), daemon=True) if alerting else None
    )
    if alert_thread:
        alert_thread.start()
    while any(th.is_alive() for th in threads):
        for th in threads:
            th.join(timeout=0.5)
    if alerting and alert_thread:
        alert_stop.set()  # the consumers are done: drain what is due, then stop
        alert_thread.join(timeout=30)
        alerting.close()
    totals = {
        k: sum(m.stats[k] for m in members) for k in ("accepted", "rejected", "late", "flushes", "superseded")
    }
    totals["windows_evaluated"] = evaluator.evaluated
    print(orjson.dumps(totals).decode())
    store.close()
    return 0


def _alert_service(args: argparse.Namespace, store: Any, models: Any) -> Any:
    if not args.rules:
        return None
    from driftline.alerting.config import ConfigError, load
    from driftline.alerting.runner import AlertRunner
    from driftline.storage.store import AlertStore

    try:
        rules = load(args.rules)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    outbox = args.outbox or _default_outbox(args.store)
    return AlertRunner(rules, AlertStore(store), outbox, models=models)


def _default_outbox(dsn: str) -> str:
    if dsn.startswith(("http://", "https://")):
        return str(Path.cwd() / "driftline-outbox.jsonl")
    return str(Path(dsn.removeprefix("chdb://")) / "outbox.jsonl")


_ALERT_KEYS = (
    "at",
    "state",
    "status",
    "rule",
    "model",
    "feature",
    "metric",
    "value",
    "threshold",
    "severity",
    "episode",
)


def _alerts(args: argparse.Namespace) -> int:
    from driftline.storage.store import AlertStore

    store = _open_store(args.store)
    history = AlertStore(store).alert_history(args.model, args.limit)
    store.close()
    if args.json:  # a dead notification adds its receiver, attempts and reason
        for h in history:
            keys = (*_ALERT_KEYS, "receiver", "attempts", "reason") if h["state"] == "dead" else _ALERT_KEYS
            print(orjson.dumps({k: h[k] for k in keys}).decode())
    elif history:
        from driftline.report_text import print_alerts

        print_alerts(history)
    else:
        print("no alerts" + (f" for model {args.model!r}" if args.model else ""))
    return 0


def _silence(args: argparse.Namespace) -> int:
    import time
    import uuid

    from driftline.contract import format_ts
    from driftline.storage.store import AlertStore

    store = _open_store(args.store)
    alerts = AlertStore(store)
    now = time.time()
    try:
        if args.action == "add":
            matchers = dict(m.split("=", 1) for m in args.match if "=" in m)
            if not matchers or len(matchers) != len(args.match):
                raise UsageError("--match LABEL=GLOB is required (repeatable)")
            sid = uuid.uuid4().hex[:12]
            alerts.save_silence(sid, matchers, now, now + args.duration / 1000, args.comment, args.by)
            print(
                orjson.dumps(
                    {"id": sid, "matchers": matchers, "ends_at": format_ts(now * 1000 + args.duration)}
                ).decode()
            )
        elif args.action == "expire":
            found = [s for s in alerts.silences() if s[0] == args.id]
            if not found:
                raise UsageError(f"no silence with id {args.id!r}")
            sid, matchers, start, _, comment, by = found[0]
            alerts.save_silence(sid, matchers, start, now, comment, by)
            print(orjson.dumps({"id": sid, "expired": True}).decode())
        else:
            for sid, matchers, start, end, comment, by in alerts.silences():
                print(
                    orjson.dumps(
                        {
                            "id": sid,
                            "matchers": matchers,
                            "starts_at": format_ts(start * 1000),
                            "ends_at": format_ts(end * 1000),
                            "active": start <= now < end,
                            "comment": comment,
                            "created_by": by,
                        }
                    ).decode()
                )
    finally:
        store.close()
    return 0


def _config(args: argparse.Namespace) -> int:
    import yaml

    from driftline.alerting.config import ConfigError, load
    from driftline.settings import check_kafka, effective, load_settings

    try:
        settings = load_settings(args.file)
        alerting = load(settings.rules or args.file)
        check_kafka(args.file, settings.kafka)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not settings.api_keys and not settings.open_mode:
        raise UsageError(
            f"{args.file}: service.api_keys: none, so serve would refuse to start: set them (or "
            "DRIFTLINE_API_KEYS), or open_mode: true"
        )
    print(f"# {args.file} is valid. In effect (environment applied, defaults filled in, secrets masked):")
    print(yaml.safe_dump(effective(settings, alerting), sort_keys=False, allow_unicode=True), end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from driftline.alerting.config import ConfigError
    from driftline.api.app import create_app

    _QuietServer = _quiet_server_class()
    from driftline import logs
    from driftline.ingest.kafka import KafkaUnavailable
    from driftline.service import Service
    from driftline.settings import kafka_overrides, load_settings

    given = {
        "store": args.store,
        "bootstrap": args.bootstrap,
        "topics": args.topic,
        "http_host": args.host,
        "http_port": args.port,
        "open_mode": True if args.open else None,
    }
    try:
        extra = kafka_overrides(args.kafka_config_file, args.kafka_config)
        settings = load_settings(args.config, extra, **{k: v for k, v in given.items() if v is not None})
        if settings.rules is None and args.config and _has_rules(args.config):
            settings = settings.model_copy(update={"rules": args.config})
        if args.log_level is None:
            logs.setup(settings.log_level)
        if not settings.api_keys and not settings.open_mode:
            raise UsageError(
                "no API keys configured: set service.api_keys (or DRIFTLINE_API_KEYS), or pass --open"
            )
        service = Service(settings)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    server = _QuietServer(
        uvicorn.Config(create_app(service), host=settings.http_host, port=settings.http_port, log_config=None)
    )
    server.listening = lambda port: print(_serve_line(settings, port), flush=True)
    stop = lambda *_: setattr(server, "should_exit", True)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        service.start()
    except KafkaUnavailable as exc:
        service.stop()
        raise UsageError(str(exc)) from None
    try:
        server.run()  # returns once SIGTERM/SIGINT asked it to
    finally:
        service.stop()  # flush panes, commit offsets, drain the outbox
    return 0


def _serve_line(settings: Any, port: int) -> str:
    """The one line `serve` prints: where it listens and what it consumes."""
    where = f"driftline serve: listening on http://{settings.http_host}:{port} (API docs /docs)"
    if not settings.bootstrap:
        return f"{where}; HTTP ingest only"
    topics = ",".join(settings.topics)
    return f"{where}; consuming {topics} from {settings.bootstrap} as group {settings.group}"


def _quiet_server_class() -> type:
    import contextlib
    import socket
    from collections.abc import Callable, Iterator

    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its shutdown, which would kill the process before the
        service flushed; driftline handles the signals itself. ``listening`` is called with the
        port once the socket is bound, so whoever waits for the line can connect."""

        listening: Callable[[int], None] | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and self.listening:
                self.listening(self.servers[0].sockets[0].getsockname()[1])

    return QuietServer


def _has_rules(path: str) -> bool:
    import yaml

    return bool((yaml.safe_load(Path(path).read_text()) or {}).get("rules"))


def _replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from driftline.alerting.config import ConfigError
    from driftline.ingest.files import TableError
    from driftline.service import Service
    from driftline.settings import load_settings

    try:
        settings = load_settings(
            store=args.store, rules=args.rules, pane_ms=args.pane, window_ms=args.window, open_mode=True
        )
        service = Service(settings)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    import hashlib

    ingest = service.http_ingest
    ingest.source = "replay"
    ingest.max_future_ms = None  # a backfill may hold any period
    totals = {"accepted": 0, "rejected": 0, "late": 0}
    try:
        messages = _replay_messages(args.file, args.segments, args.model)
        # on a terminal's stderr and gone when done: stdout carries only the totals
        bar = Console(stderr=True)
        with Progress(console=bar, transient=True, disable=not bar.is_terminal) as progress:
            task = progress.add_task(f"replaying {args.file}", total=len(messages))
            for i in range(0, len(messages), args.batch_size):
                batch = messages[i : i + args.batch_size]
                # the same batch replayed twice is stored once; an edited file is new data
                key = hashlib.sha256(b"\n".join(batch)).hexdigest()
                result = ingest.ingest(batch, key)
                totals["accepted"] += result.accepted
                totals["rejected"] += len(result.errors)
                totals["late"] += result.late
                progress.update(task, advance=len(messages[i : i + args.batch_size]))
        ingest.finish()
        if service.alerting:
            service.alerting.drain()
    except TableError as exc:
        raise UsageError(str(exc)) from None
    finally:
        service.stop()
    totals["windows_evaluated"] = service.evaluator.evaluated
    print(orjson.dumps(totals).decode() if args.json else "  ".join(f"{k}={v}" for k, v in totals.items()))
    return 0


def _replay_messages(path: str, segments: list[str], model: str | None) -> list[bytes]:
    """Events in event-time order, as contract JSON."""
    from driftline.contract import IDENTITY_FIELDS
    from driftline.ingest.files import TableError, read_table

    if path.endswith((".ndjson", ".jsonl")):
        try:
            lines = [line for line in Path(path).read_bytes().split(b"\n") if line.strip()]
        except OSError as exc:
            raise TableError(f"{path}: cannot read: {exc.strerror}") from None
        return sorted(lines, key=_ts_of)
    df = read_table(path)
    fields = {*IDENTITY_FIELDS, "prediction", "label", "latency_ms"}
    if "ts" not in df.columns or "event_id" not in df.columns:
        raise TableError(f"{path}: needs the columns event_id and ts (as 'driftline simulate --out' writes)")
    if not model and "model_id" not in df.columns:
        raise TableError(f"{path}: has no model_id column: pass --model")
    features = [c for c in df.columns if c not in fields and c not in segments]
    out = []
    for row in df.sort("ts").iter_rows(named=True):
        event = {k: row[k] for k in fields if k in row}
        if model:
            event["model_id"] = model
        event["features"] = {f: row[f] for f in features}
        event["segments"] = {s: row[s] for s in segments if row.get(s) is not None}
        out.append(orjson.dumps(event))
    return out


def _ts_of(line: bytes) -> float:
    """Sort key: the event time (RFC 3339 or epoch ms); unreadable lines first (they are rejected)."""
    from driftline.contract import InvalidEvent, parse_ts

    try:
        return float(parse_ts(orjson.loads(line).get("ts")))
    except (orjson.JSONDecodeError, AttributeError, InvalidEvent):
        return 0.0


def _demo(args: argparse.Namespace) -> int:
    from driftline import demo

    return demo.run(args.dir, args.keep_running, kafka=args.kafka, keep=args.keep)


def _spec_for(path: str, spec: Any) -> Any:
    """Roles that the file actually has (a reference file may lack labels); segments are asked
    for by name, so a missing one is an error."""
    from dataclasses import replace

    from driftline.ingest.files import read_table

    cols = set(read_table(path).columns)
    return replace(
        spec,
        prediction=spec.prediction if spec.prediction in cols else None,
        label=spec.label if spec.label in cols else None,
        latency=spec.latency if spec.latency in cols else None,
    )


def _stats(args: argparse.Namespace) -> int:
    import time

    from driftline.contract import InvalidEvent, parse_ts
    from driftline.ingest.evaluate import range_report

    try:
        start = parse_ts(args.start) if args.start else None
        end = parse_ts(args.end) if args.end else int(time.time() * 1000) + 1
    except InvalidEvent as exc:
        raise UsageError(f"--from/--to: {exc.reason}") from None
    from driftline.storage.codec import registered

    store = _open_store(args.store)
    references = _references(store)
    if args.model not in references:
        raise UsageError(f"model {args.model!r} has no reference in {args.store}")
    model = registered(store).get(args.model)
    thresholds = _thresholds(args, model.thresholds if model else None)
    report = range_report(store, references[args.model], args.model, start, end, args.version, thresholds)
    store.close()
    return _print_report(report, args)


if __name__ == "__main__":
    raise SystemExit(main())
