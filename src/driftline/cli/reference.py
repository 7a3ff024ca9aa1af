"""``reference build`` (from a file, or from the stored traffic of a past range) and ``reference
list`` (every reference the model had, and when each applied)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from driftline.cli._args import UsageError, add_table_args, csv, open_store, print_json, table_spec

if TYPE_CHECKING:
    from driftline.cli import Command


def register(command: Command) -> None:
    r = command(
        "reference",
        "build a model's reference from a file (or a stored range) and store it; list its references",
        "driftline reference build --store chdb://$PWD/store --model churn --file data/reference.parquet \\\n"
        "      --segments region,gender --prediction prediction --label label --latency latency_ms",
    )
    r.add_argument(
        "action",
        choices=["build", "list"],
        help="build: fit bins on the file (or merge a stored range) and store them; list: its references",
    )
    r.add_argument("--store", required=True, help="chdb:///dir or http(s)://user:pass@host:8123/db")
    r.add_argument("--model", required=True)
    r.add_argument("--file", default=None, help="build from this file (Parquet/CSV/NDJSON)")
    r.add_argument(
        "--from",
        dest="start",
        default=None,
        help="build from the stored traffic from here (RFC 3339 or epoch ms)",
    )
    r.add_argument(
        "--to", dest="end", default=None, help="... to here (exclusive); the bins stay the model's"
    )
    r.add_argument("--json", action="store_true", help="list: one JSON object per reference")
    add_table_args(r)
    r.add_argument(
        "--by",
        type=csv,
        default=None,
        metavar="COL[,COL...]",
        help="also store the reference of each value of these segment columns or categorical features, "
        "which the stream watches as slices (default: the model's registered slices)",
    )
    r.set_defaults(run=run_reference)


def run_reference(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(args)
    ranged = args.start is not None or args.end is not None
    if bool(args.file) == ranged or (ranged and (args.start is None or args.end is None)):
        raise UsageError("build takes --file, or --from and --to (a stored range)")
    if args.file is None:
        return _from_range(args)
    return _from_file(args)


def _list(args: argparse.Namespace) -> int:
    from driftline import query
    from driftline.contract import format_ts

    store = open_store(args.store)
    try:
        versions = store.reference_versions(args.model)
        if not versions:
            raise UsageError(f"{query.no_reference(store, args.model)} in {args.store}")
    finally:
        store.close()
    for v in versions:
        until = v["applied_until"]
        shown = v | {
            "applied_from": format_ts(v["applied_from"]),
            "applied_until": until and format_ts(until),
        }
        if args.json:
            print_json({"model": args.model, **shown})
        else:
            current = "  (in effect)" if until is None else f"  until {shown['applied_until']}"
            print(
                f"{shown['applied_from']}  {v['reference_id']}  {v['events']} events  {v['source']}{current}"
            )
    return 0


def _from_range(args: argparse.Namespace) -> int:
    from driftline import query
    from driftline.contract import InvalidEvent, parse_ts
    from driftline.storage.codec import reference_id, reference_rows

    try:
        start, end = parse_ts(args.start), parse_ts(args.end)
    except InvalidEvent as exc:
        raise UsageError(f"--from/--to: {exc.reason}") from None
    store = open_store(args.store)
    try:
        current = query.load_references(store).get(args.model)
        if current is None:  # the bins come from a reference: a range is folded on them
            raise UsageError(
                f"model {args.model!r} has no reference to take the bins from: build one from a file"
            )
        sketch = query.range_sketch(store, current, args.model, start, end)
        if sketch.n_events == 0:
            raise UsageError(f"no stored events of model {args.model!r} in {args.start} .. {args.end}")
        source = f"range {args.start} .. {args.end}"
        store.save_reference(reference_rows(args.model, sketch, source=source))
    finally:
        store.close()
    print_json({"model": args.model, "reference_id": reference_id(sketch.binning), "rows": sketch.n_events,
                "source": source})  # fmt: skip
    return 0


def _from_file(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from driftline.ingest.files import TableError, load_reference
    from driftline.storage.codec import reference_id, reference_rows, registered

    spec = table_spec(args)
    store = open_store(args.store)
    try:
        model = registered(store).get(args.model)
        if not spec.segments:  # the model's registered segment columns
            spec = replace(spec, segments=list(model.segments) if model else [])
        by = args.by if args.by is not None else list(model.slices) if model else []
        try:
            reference, kinds = load_reference(args.file, spec, args.bins, args.psi_bins, by)
        except (TableError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        store.save_reference(reference_rows(args.model, reference, source=str(args.file)))
    finally:
        store.close()
    print_json(
        {
            "model": args.model,
            "reference_id": reference_id(reference.binning),
            "rows": reference.n_events,
            "features": kinds,
        }
    )
    return 0
