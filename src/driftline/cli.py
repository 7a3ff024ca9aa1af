"""The ``driftline`` command line. Settings and I/O are resolved here and passed down."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from driftline.detectors.numeric import DEFAULT_FINE_BINS, DEFAULT_PSI_BINS


class UsageError(Exception):
    """A problem with the command's input: printed as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UsageError as exc:
        print(f"driftline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftline", description="Model monitoring and drift detection.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compare",
        help="compare a current data set with a reference (Parquet/CSV)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  driftline compare --reference train.parquet --current today.parquet \\\n"
        "      --segments region,gender --prediction score --label label --latency latency_ms --json",
    )
    c.add_argument("--reference", required=True, help="reference data (.parquet, .csv, .tsv, .ndjson)")
    c.add_argument("--current", required=True, help="current data, same columns")
    c.add_argument("--features", type=_csv, default=None, help="feature columns (default: all others)")
    c.add_argument("--exclude", type=_csv, default=[], help="columns that are not features")
    c.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="COL=numeric|categorical",
        help="override an inferred feature kind (repeatable)",
    )
    c.add_argument("--segments", type=_csv, default=[], help="segment columns for fairness")
    c.add_argument("--prediction", help="prediction column (score or class)")
    c.add_argument("--label", help="label column")
    c.add_argument("--latency", help="latency column in milliseconds")
    c.add_argument("--positive-threshold", type=float, default=0.5, help="score >= this is positive")
    c.add_argument("--positive-class", default="1", help="class value counted as positive")
    c.add_argument("--psi-threshold", type=float, default=0.2)
    c.add_argument("--ks-threshold", type=float, default=0.1)
    c.add_argument("--min-support", type=int, default=30, help="fairness: smallest group compared")
    c.add_argument("--bins", type=int, default=DEFAULT_FINE_BINS, help="fine bins per numeric feature")
    c.add_argument("--psi-bins", type=int, default=DEFAULT_PSI_BINS)
    c.add_argument("--json", action="store_true", help="print one JSON document")
    c.set_defaults(run=_compare)

    s = sub.add_parser(
        "simulate",
        help="generate seeded example traffic with drift (to files)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  driftline simulate --out example --events 200000 \\\n"
        "      --drift-features f00_normal,plan",
    )
    s.add_argument("--out", required=True, help="directory for reference.parquet and current.parquet")
    s.add_argument("--events", type=int, default=100_000, help="events per file")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--drift-features", type=_csv, default=["f00_normal", "f01_lognormal", "plan"])
    s.add_argument("--fairness-regression", default="region=south", help="ATTR=GROUP, or '' for none")
    s.set_defaults(run=_simulate)
    return p


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
    from driftline.detectors.profile import Binning, ModelSketch, Thresholds, drift_report
    from driftline.ingest.files import TableError, TableSpec, read_table, to_batch

    spec = TableSpec(
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
    try:
        ref_df, cur_df = read_table(args.reference), read_table(args.current)
        spec.check(ref_df, args.reference)
        spec.check(cur_df, args.current)
        kinds = spec.feature_kinds(ref_df)
        missing = [c for c in kinds if c not in cur_df.columns]
        if missing:
            raise TableError(f"{args.current}: no column named {', '.join(map(repr, missing))}")
        ref_batch, cur_batch = to_batch(ref_df, spec, kinds), to_batch(cur_df, spec, kinds)
        binning = Binning.fit({n: ref_batch.features[n] for n in kinds}, kinds, args.bins, args.psi_bins)
    except (TableError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    threads = min(4, len(kinds))
    reference = ModelSketch(binning).update(ref_batch, threads)
    current = ModelSketch(binning).update(cur_batch, threads)
    thresholds = Thresholds(args.psi_threshold, args.ks_threshold, args.min_support)
    report = drift_report(reference, current, thresholds)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        from driftline.report_text import print_report

        print_report(report)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from driftline.simulate import FILE_DROP, Traffic, generate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = Traffic(n=args.events, seed=args.seed)
    ref = generate(base)
    cur = generate(
        Traffic(
            n=args.events,
            seed=args.seed + 1,
            drift_at=0.0,
            drift_features=args.drift_features,
            fairness_regression=args.fairness_regression or None,
        )
    )
    ref.drop(FILE_DROP).write_parquet(out / "reference.parquet")
    cur.drop(FILE_DROP).write_parquet(out / "current.parquet")
    print(f"wrote {out / 'reference.parquet'} and {out / 'current.parquet'} ({args.events} rows each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
