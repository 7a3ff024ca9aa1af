"""``compare`` (two files) and ``stats`` (stored panes over a range): the same drift report."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from driftline.cli._args import (
    UsageError,
    add_report_args,
    add_table_args,
    add_threshold_args,
    csv,
    open_store,
    print_report,
    table_spec,
    thresholds,
    write_html,
)
from driftline.detectors.defaults import DEFAULT_SLICE_VALUES

if TYPE_CHECKING:
    from driftline.cli import Command


def register(command: Command) -> None:
    c = command(
        "compare",
        "compare a current data set with a reference (Parquet/CSV/NDJSON)",
        "driftline compare --reference train.parquet --current today.parquet \\\n"
        "      --segments region,gender --prediction score --label label --latency latency_ms --json\n"
        "  driftline compare --reference train.parquet --current today.parquet --prediction score \\\n"
        "      --label label --by region,plan",
    )
    c.add_argument("--reference", required=True, help="reference data (.parquet, .csv, .tsv, .ndjson)")
    c.add_argument("--current", required=True, help="current data, same columns")
    c.add_argument(
        "--bins-from",
        default=None,
        metavar="FILE",
        help="fit the bins on this file (e.g. the model's reference) instead of --reference: two "
        "exported ranges compared as the stream compares them",
    )
    add_table_args(c)
    c.add_argument(
        "--by",
        type=csv,
        default=[],
        metavar="COL[,COL...]",
        help="also report per value of each of these columns (any column; each separately, not crossed):"
        " its most frequent reference values and <other>; slices smaller than --min-support are"
        " reported but not judged",
    )
    c.add_argument(
        "--slice-values",
        type=int,
        default=DEFAULT_SLICE_VALUES,
        metavar="K",
        help="--by: slices per column, its K most frequent reference values"
        f" (default {DEFAULT_SLICE_VALUES})",
    )
    add_threshold_args(c, significance=True)
    add_report_args(c)
    c.set_defaults(run=run_compare)

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
    t.add_argument(
        "--against",
        default=None,
        metavar="KIND",
        help="compare with the stored traffic instead of the reference: previous (the range as long just"
        " before), trailing:7d (the 7 days before), seasonal:1w (the same range a week earlier)",
    )
    t.add_argument(
        "--by",
        type=csv,
        default=[],
        metavar="COL[,COL...]",
        help="also report each slice of these attributes (the model's reference must hold them)",
    )
    add_threshold_args(t, " unless the model registered its own", significance=True)
    add_report_args(t)
    t.set_defaults(run=run_stats)


def run_compare(args: argparse.Namespace) -> int:
    from driftline.ingest.compare import compare_tables
    from driftline.ingest.files import TableError

    spec = table_spec(args)
    if args.slice_values < 1:
        raise UsageError(f"--slice-values {args.slice_values}: need at least 1")
    try:
        comparison = compare_tables(
            args.reference,
            args.current,
            spec,
            args.bins,
            args.psi_bins,
            thresholds(args),
            by=args.by,
            slice_values=args.slice_values,
            bins_from=args.bins_from,
        )
    except (TableError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    facts = [("reference file", args.reference), ("current file", args.current)]
    write_html(comparison, args, "Drift report", facts)
    return print_report(comparison.report, args)


def run_stats(args: argparse.Namespace) -> int:
    import time

    from driftline import query
    from driftline.contract import InvalidEvent, parse_ts
    from driftline.detectors.windows import ReferenceKindError
    from driftline.storage.codec import registered

    try:
        start = parse_ts(args.start) if args.start else None
        end = parse_ts(args.end) if args.end else int(time.time() * 1000) + 1
    except InvalidEvent as exc:
        raise UsageError(f"--from/--to: {exc.reason}") from None
    store = open_store(args.store)
    try:
        references = query.load_references(store)
        if args.model not in references:
            raise UsageError(f"{query.no_reference(store, args.model)} in {args.store}")
        model = registered(store).get(args.model)
        limits = thresholds(args, model.thresholds if model else None)
        try:
            comparison = query.compare_range(
                store, references[args.model], args.model, start, end, args.version, limits, args.against
            )
        except ReferenceKindError as exc:
            raise UsageError(f"--against {exc}") from None
        if args.by:
            try:
                pairs = query.slice_pairs(store, references, args.model, args.by, start, end, args.version)
                query.add_slices(comparison, pairs, limits)
            except KeyError as exc:
                raise UsageError(
                    f"model {args.model!r} has no slices by {exc.args[0]} in its reference: build it with "
                    "'reference build --by' (or register the model's slices first)"
                ) from None
    finally:
        store.close()
    facts = [("model", args.model + (f" version {args.version}" if args.version else ""))]
    write_html(comparison, args, f"Drift report: {args.model}", facts)
    return print_report(comparison.report, args)
