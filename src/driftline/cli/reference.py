"""``reference build``: fit a model's reference on a file and store it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from driftline.cli._args import UsageError, add_table_args, csv, open_store, print_json, table_spec

if TYPE_CHECKING:
    from driftline.cli import Command


def register(command: Command) -> None:
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
