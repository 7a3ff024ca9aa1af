"""Decoder choice benchmark: Kafka message bytes -> validated events -> columnar ``Batch``.

Run from the repository root::

    python -m bench.decode --quick     # 50k messages, 1 repeat: a smoke run, JSON to the temporary directory
    python -m bench.decode             # 200k messages, 3 repeats

The same in-memory messages (``driftline.simulate`` traffic, ``orjson.dumps`` of the contract
dicts: 20 numeric + 3 categorical features, 2 segments, prediction, label, latency) go in
batches of ``--batch`` (default 10,000, the consumer's ``--batch-size`` in ``bench.stream``)
through each decoder. Timed per batch, summed over the stream (median of ``--repeat`` runs
after one untimed warm-up run):

* ``driftline``: what the consumer does in this tree,
  ``driftline.ingest.decode.decode(value, max_bytes)`` per message, then
  ``decode.to_batch(events, binning)``. Since commit 5f550c0 that is a msgspec Struct fast path
  with the contract's parser run on any message msgspec refuses (for the reason), and dict
  category codes in ``to_batch``.
* ``orjson_contract``: ``contract.parse_event`` (``orjson.loads`` + ``contract.validate_event``)
  per message, driftline's decoder before 5f550c0, then the same ``to_batch``.
* ``stdlib_json``: ``json.loads`` + the same ``contract.validate_event``, then ``to_batch``.
* ``msgspec``: ``msgspec.json.Decoder(Struct)`` per message, a Struct mirroring the contract
  (types, required fields, id lengths, ``latency_ms >= 0``; ``gc=False`` as driftline's) but
  without the checks a type cannot express (``ts`` range, label kind) and without a fallback;
  ``to_batch`` on the Structs.
* ``msgspec_model_struct``: ``features`` decoded into a per-model Struct generated from the
  reference binning (``msgspec.defstruct``, ``gc=False``); other features are skipped
  unvalidated. Its columnarization is the fastest pure-Python one found here: rows transposed
  with ``attrgetter`` + ``zip(*rows)`` instead of one list comprehension per feature, and
  categories coded with a dict (as ``to_batch`` also does since 5f550c0).
* ``polars_ndjson``: ``polars.read_ndjson`` on the batch's values joined by ``\\n`` (schema
  inferred), ``unnest`` of ``features`` and ``segments``; columnar via
  ``driftline.ingest.files.to_batch`` (the file path's polars -> numpy conversion). No contract
  validation at all.
* ``polars_ndjson_schema``: the same with the schema given up front.
* ``scanner``: ``driftline.ingest.scan.scan`` (one Numba pass over the batch's joined values,
  for the contract: see that module), ``decode()`` for each message it leaves to the fallback
  (for the reason, or to accept it), then as the consumer does: ``ScannedBatch.batch`` per
  (model, version, pane) group and ``to_batch`` of the fallback events; the groups' Batches are
  concatenated (vectorised) for the checks.

Checks: every decoder's ``Batch`` equals driftline's on the first batch (numeric columns bit
for bit, categories, outcomes); a rejection matrix runs each decoder on a batch holding one
message of each malformed kind from ``simulate.bad_message`` and records, per decoder, whether
that one message was rejected with a reason, the whole batch failed, or it was silently
accepted. ``--out`` (default ``bench/results/decode.json``) gets everything.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import operator
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import NoneType
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
import polars as pl

from bench._harness import out_path, parser, roles, stamp, write_result
from driftline.contract import MAX_EVENT_BYTES, MAX_FEATURES, InvalidEvent, parse_event, validate_event
from driftline.detectors.categorical import dictionary_encode
from driftline.detectors.profile import Batch, Binning, ModelSketch
from driftline.ingest import files
from driftline.ingest.decode import _numeric, _outcome, decode, to_batch
from driftline.ingest.scan import OK, FeatureNames, ScannedBatch, scan
from driftline.simulate import (
    CATEGORICAL,
    FILE_DROP,
    NUMERIC_FEATURES,
    SEGMENTS,
    Traffic,
    bad_message,
    events,
)
from driftline.simulate import generate as generate_traffic

SPEC = files.TableSpec(**roles())
MEASURED = ("numpy", "numba", "orjson", "msgspec", "polars")  # the decoders' packages
BAD_KINDS = {
    0: "truncated JSON",
    1: "prediction is an object",
    2: "ts in year 9999",
    3: "not UTF-8",
    4: "model_id is a number",
    5: "latency_ms < 0",
    6: "features is an array",
}


# --------------------------------------------------------------------------------------------
# data


def make_messages(n: int, seed: int, decimals: int | None = None, chunk: int = 200_000) -> list[bytes]:
    """Simulator traffic as message values; ``decimals`` rounds every float (shorter messages)."""
    out: list[bytes] = []
    floats = [*NUMERIC_FEATURES, "prediction", "latency_ms"]
    for k, start in enumerate(range(0, n, chunk)):
        t = Traffic(n=min(chunk, n - start), seed=seed + k, start_ms=Traffic.start_ms + start)
        df = generate_traffic(t)
        if decimals is not None:
            df = df.with_columns(pl.col(c).round(decimals) for c in floats)
        out.extend(orjson.dumps(e) for e in events(df))
    return out


def make_binning(rows: int, seed: int) -> tuple[Binning, dict[str, str]]:
    """The reference binning, fitted exactly as ``driftline reference build`` does."""
    with tempfile.TemporaryDirectory(prefix="driftline-bench-decode-") as tmp:
        path = Path(tmp) / "reference.parquet"
        generate_traffic(Traffic(n=rows, seed=seed)).drop(FILE_DROP).write_parquet(path)
        reference, kinds = files.load_reference(path, SPEC, 1000, 10)
    return reference.binning, dict(kinds)


# --------------------------------------------------------------------------------------------
# decoders: decode(values) -> (decoded, [(index, reason)]); columnar(decoded) -> Batch


Rejections = list[tuple[int, str]]


@dataclass
class Decoder:
    name: str
    label: str
    decode: Callable[[Sequence[bytes]], tuple[Any, Rejections]]
    columnar: Callable[[Any], Batch]
    per_event_reasons: bool
    validation: str


def driftline_decode(values: Sequence[bytes]) -> tuple[list[Any], Rejections]:
    out, rejected = [], []
    for i, v in enumerate(values):
        try:
            out.append(decode(v, MAX_EVENT_BYTES))
        except InvalidEvent as exc:
            rejected.append((i, str(exc)))
    return out, rejected


def orjson_contract_decode(values: Sequence[bytes]) -> tuple[list[Any], Rejections]:
    out, rejected = [], []
    for i, v in enumerate(values):
        try:
            out.append(parse_event(v, max_bytes=MAX_EVENT_BYTES))
        except InvalidEvent as exc:
            rejected.append((i, str(exc)))
    return out, rejected


def stdlib_decode(values: Sequence[bytes]) -> tuple[list[Any], Rejections]:
    out, rejected = [], []
    for i, v in enumerate(values):
        try:
            if len(v) > MAX_EVENT_BYTES:
                raise InvalidEvent("$", f"message is {len(v)} bytes, above the limit")
            try:
                obj = json.loads(v)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidEvent("$", f"not valid JSON ({exc})") from None
            out.append(validate_event(obj))
        except InvalidEvent as exc:
            rejected.append((i, str(exc)))
    return out, rejected


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Scalar = float | int | str | bool


class MsgEvent(msgspec.Struct, gc=False):
    """The event contract as far as msgspec types and constraints can say it."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    model_id: Name
    ts: int | float | str
    features: Annotated[dict[Name, Scalar | None], msgspec.Meta(max_length=MAX_FEATURES)]
    prediction: Scalar
    model_version: Annotated[str, msgspec.Meta(max_length=256)] | None = ""
    label: Scalar | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    segments: dict[str, str] = {}  # msgspec copies mutable defaults per instance


_msg_decoder = msgspec.json.Decoder(MsgEvent)


def msgspec_decode(values: Sequence[bytes]) -> tuple[list[Any], Rejections]:
    out, rejected = [], []
    dec = _msg_decoder.decode
    for i, v in enumerate(values):
        try:
            out.append(dec(v))
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            rejected.append((i, str(exc)))
    return out, rejected


class ModelStructDecoder:
    """``features`` as a Struct with one field per reference feature (generated per model)."""

    def __init__(self, binning: Binning) -> None:
        self.numeric = list(binning.numeric)
        self.categorical = list(binning.categorical)
        self.binning = binning
        names = [*self.numeric, *self.categorical]
        feats = msgspec.defstruct("Features", [(n, Scalar | None, None) for n in names], gc=False)
        segs = msgspec.defstruct("Segments", [(s, str | None, None) for s in SEGMENTS], gc=False)
        event = msgspec.defstruct(
            "ModelEvent",
            [
                ("event_id", Annotated[str, msgspec.Meta(min_length=1, max_length=128)]),
                ("model_id", Name),
                ("ts", int | float | str),
                ("features", feats),
                ("prediction", Scalar),
                ("model_version", Annotated[str, msgspec.Meta(max_length=256)] | None, ""),
                ("label", Scalar | None, None),
                ("latency_ms", Annotated[float, msgspec.Meta(ge=0)] | None, None),
                ("segments", segs | None, None),
            ],
            gc=False,  # holds only scalars and gc=False structs: the collector never scans it
        )
        self._decoder = msgspec.json.Decoder(event)

    def decode(self, values: Sequence[bytes]) -> tuple[list[Any], Rejections]:
        out, rejected = [], []
        dec = self._decoder.decode
        for i, v in enumerate(values):
            try:
                out.append(dec(v))
            except msgspec.DecodeError as exc:
                rejected.append((i, str(exc)))
        return out, rejected

    def columnar(self, evs: list[Any]) -> Batch:
        """Rows -> columns with ``attrgetter`` + ``zip(*rows)`` (C-level transposition), and
        categories encoded with a dict (first-seen order) instead of ``np.unique`` on objects."""
        if not evs:
            return Batch(0, {})
        names = [*self.numeric, *self.categorical]
        get = operator.attrgetter(*names)
        cols = dict(zip(names, zip(*[get(e.features) for e in evs], strict=True), strict=True))
        columns: dict[str, Any] = {}
        type_errors: dict[str, int] = {}
        for name in self.numeric:
            columns[name], type_errors[name] = _numeric(cols[name])
        for name in self.categorical:
            columns[name] = fast_encode(cols[name])
        latency, prediction, label, segs = zip(
            *[(e.latency_ms, e.prediction, e.label, e.segments) for e in evs], strict=True
        )
        seg_get = operator.attrgetter(*SEGMENTS)
        seg_cols = zip(*[(None,) * len(SEGMENTS) if g is None else seg_get(g) for g in segs], strict=True)
        return Batch(
            n=len(evs),
            features=columns,
            type_errors=type_errors,
            latency_ms=_numeric(latency)[0],
            segments={s: fast_encode(c) for s, c in zip(SEGMENTS, seg_cols, strict=True)},
            positive=_outcome(prediction, 0.5, "1"),
            label=_outcome(label, 0.5, "1"),
        )


_TEXT = {str, NoneType}


def fast_encode(values: Sequence[object]) -> tuple[list[str | None], np.ndarray]:
    """(names, codes) like ``dictionary_encode``; a dict lookup per value when all are str/None."""
    if not set(map(type, values)) <= _TEXT:
        return dictionary_encode(np.array(values, dtype=object))  # bools, numbers: canonical text
    index: dict[object, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64, len(values))
    return list(index), codes  # type: ignore[arg-type]


def polars_schema() -> dict[str, Any]:
    feats = {n: pl.Float64 for n in NUMERIC_FEATURES} | {c: pl.String for c in CATEGORICAL}
    return {
        "event_id": pl.String,
        "model_id": pl.String,
        "model_version": pl.String,
        "ts": pl.Int64,
        "features": pl.Struct(feats),
        "prediction": pl.Float64,
        "label": pl.Int64,
        "latency_ms": pl.Float64,
        "segments": pl.Struct({s: pl.String for s in SEGMENTS}),
    }


def polars_decode(values: Sequence[bytes], schema: dict[str, Any] | None = None) -> tuple[Any, Rejections]:
    df = pl.read_ndjson(io.BytesIO(b"\n".join(values)), schema=schema)
    return df.unnest("features", "segments"), []


PANE_MS = 60_000  # the consumer's default pane (ingest.panes.WindowSpec)


class ScannerDecoder:
    """The Numba batch scanner, with ``decode()`` for what it leaves, grouped as the consumer folds."""

    def __init__(self, binning: Binning) -> None:
        self.binning = binning
        self.plan = binning.segment_plan()
        self.names = FeatureNames.of([*binning.numeric, *binning.categorical])

    def decode(self, values: Sequence[bytes]) -> tuple[Any, Rejections]:
        sb = scan(values, self.names, MAX_EVENT_BYTES)
        fallback, rejected = [], []
        for i in np.flatnonzero(sb.status != OK).tolist():
            try:
                fallback.append(decode(values[i], MAX_EVENT_BYTES))
            except InvalidEvent as exc:
                rejected.append((i, str(exc)))
        return (sb, fallback), rejected

    def columnar(self, decoded: tuple[ScannedBatch, list[Any]]) -> Batch:
        sb, fallback = decoded
        batches = [sb.batch(rows, self.binning, segments=self.plan) for rows in groups(sb)]
        if fallback:
            batches.append(to_batch(fallback, self.binning, segments=self.plan))
        return concat_batches(batches)


def groups(sb: ScannedBatch) -> list[np.ndarray]:
    """Rows of the OK messages per (model, version, pane), each in arrival order."""
    ok = np.flatnonzero(sb.status == OK)
    keys = (sb.ts_ms[ok] // PANE_MS, sb.version[ok], sb.model[ok])
    order = np.lexsort(keys)
    rows = ok[order]
    change = np.zeros(len(rows), bool)
    for k in keys:
        sorted_k = k[order]
        change[1:] |= sorted_k[1:] != sorted_k[:-1]
    return np.split(rows, np.flatnonzero(change))


def _concat_codes(columns: list[Any]) -> tuple[list[str | None], np.ndarray]:
    names: dict[str | None, int] = {}
    codes = []
    for col_names, col_codes in columns:
        lut = np.array([names.setdefault(n, len(names)) for n in col_names] or [0], np.int64)
        codes.append(lut[np.asarray(col_codes, np.int64)])
    return list(names), np.concatenate(codes) if codes else np.zeros(0, np.int64)


def concat_batches(batches: list[Batch]) -> Batch:
    """One Batch of several (vectorised: a dict lookup per category name, not per row)."""
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return Batch(0, {})
    first = batches[0]
    features: dict[str, Any] = {}
    for name, col in first.features.items():
        cols = [b.features[name] for b in batches]
        features[name] = _concat_codes(cols) if isinstance(col, tuple) else np.concatenate(cols)
    segment_names = sorted({a for b in batches for a in b.segments})
    segments = {}
    for a in segment_names:
        cols = [b.segments.get(a, ([None], np.zeros(b.n, np.int64))) for b in batches]
        segments[a] = _concat_codes(cols)
    return Batch(
        n=sum(b.n for b in batches),
        features=features,
        type_errors={k: sum(b.type_errors.get(k, 0) for b in batches) for k in first.type_errors},
        latency_ms=np.concatenate([b.latency_ms for b in batches]),  # type: ignore[misc]
        segments=segments,  # type: ignore[arg-type]
        positive=np.concatenate([b.positive for b in batches]),  # type: ignore[misc]
        label=np.concatenate([b.label for b in batches]),  # type: ignore[misc]
    )


def make_decoders(binning: Binning, kinds: dict[str, str]) -> list[Decoder]:
    plan = binning.segment_plan()  # the reference's segments, as the consumer folds them by default

    def dl_columnar(evs: list[Any]) -> Batch:
        return to_batch(evs, binning, segments=plan)

    def pl_columnar(df: pl.DataFrame) -> Batch:
        return files.to_batch(df, SPEC, kinds)  # type: ignore[arg-type]

    schema = polars_schema()
    model_struct = ModelStructDecoder(binning)
    scanner = ScannerDecoder(binning)
    return [
        Decoder(
            "driftline",
            "driftline decode() + to_batch (this tree)",
            driftline_decode,
            dl_columnar,
            True,
            "full contract (msgspec fast path; contract parser on refusal, for its reason)",
        ),
        Decoder(
            "orjson_contract",
            "orjson + contract.validate_event",
            orjson_contract_decode,
            dl_columnar,
            True,
            "full contract (driftline's decoder before commit 5f550c0)",
        ),
        Decoder(
            "stdlib_json", "stdlib json + validate_event", stdlib_decode, dl_columnar, True, "full contract"
        ),
        Decoder(
            "msgspec",
            "msgspec Struct (contract types)",
            msgspec_decode,
            dl_columnar,
            True,
            "types, required fields, lengths, latency >= 0; not ts range, label kind",
        ),
        Decoder(
            "msgspec_model_struct",
            "msgspec model Struct + fast columnar",
            model_struct.decode,
            model_struct.columnar,
            True,
            "as msgspec, but features outside the reference are skipped unvalidated;"
            " columnar by tuple transposition and dict category codes",
        ),
        Decoder(
            "polars_ndjson",
            "polars.read_ndjson (inferred) + unnest",
            polars_decode,
            pl_columnar,
            False,
            "none (JSON syntax; types coerced per batch)",
        ),
        Decoder(
            "polars_ndjson_schema",
            "polars.read_ndjson (schema) + unnest",
            lambda v: polars_decode(v, schema),
            pl_columnar,
            False,
            "none (JSON syntax; values cast to the given schema)",
        ),
        Decoder(
            "scanner",
            "Numba batch scanner + batch() per pane",
            scanner.decode,
            scanner.columnar,
            True,
            "full contract (proves each message valid, else decode() for the reason or to accept it)",
        ),
    ]


# --------------------------------------------------------------------------------------------
# timing


def run_stream(d: Decoder, batches: list[list[bytes]]) -> tuple[float, float, int]:
    """(decode seconds, columnar seconds, events accepted) over every batch, one pass."""
    t_dec = t_col = 0.0
    accepted = 0
    for values in batches:
        t0 = time.perf_counter()
        decoded, _ = d.decode(values)
        t1 = time.perf_counter()
        batch = d.columnar(decoded)
        t2 = time.perf_counter()
        t_dec += t1 - t0
        t_col += t2 - t1
        accepted += batch.n
        del decoded, batch
    return t_dec, t_col, accepted


def time_decoder(d: Decoder, batches: list[list[bytes]], repeat: int) -> dict[str, Any]:
    n = sum(len(b) for b in batches)
    run_stream(d, batches[:2])  # warm-up (imports, first polars call)
    runs = []
    for _ in range(repeat):
        gc.collect()
        runs.append(run_stream(d, batches))
    dec = statistics.median(r[0] for r in runs)
    both = statistics.median(r[0] + r[1] for r in runs)
    if any(r[2] != n for r in runs):
        raise AssertionError(f"{d.name}: accepted {runs[0][2]} of {n} good events")
    return {
        "label": d.label,
        "decode_s": dec,
        "decode_columnar_s": both,
        "decode_events_per_s": n / dec,
        "decode_columnar_events_per_s": n / both,
        "runs_s": [{"decode": r[0], "columnar": r[1]} for r in runs],
        "per_event_rejection_reasons": d.per_event_reasons,
        "validation": d.validation,
    }


# --------------------------------------------------------------------------------------------
# checks


def _column_values(col: Any) -> Any:
    if isinstance(col, tuple):
        names, codes = col
        return [names[c] for c in np.asarray(codes).tolist()]
    return np.asarray(col)


def same_batch(a: Batch, b: Batch) -> list[str]:
    diffs = []
    if a.n != b.n:
        return [f"n {a.n} != {b.n}"]
    for name in a.features:
        x, y = _column_values(a.features[name]), _column_values(b.features.get(name))
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y, equal_nan=True):
                diffs.append(f"feature {name}")
        elif x != y:
            diffs.append(f"feature {name}")
        if a.type_errors.get(name, 0) != b.type_errors.get(name, 0):
            diffs.append(f"type_errors {name}")
    if not np.array_equal(a.latency_ms, b.latency_ms, equal_nan=True):
        diffs.append("latency_ms")
    for s in SEGMENTS:
        if _column_values(a.segments[s]) != _column_values(b.segments[s]):
            diffs.append(f"segment {s}")
    for attr in ("positive", "label"):
        if not np.array_equal(getattr(a, attr), getattr(b, attr)):
            diffs.append(attr)
    return diffs


class _FixedKind:
    """Stands in for the numpy Generator so ``bad_message`` makes one chosen kind."""

    def __init__(self, kind: int) -> None:
        self.kind = kind

    def integers(self, low: int, high: int) -> int:
        return self.kind


def rejection_matrix(decoders: list[Decoder], good: list[bytes]) -> dict[str, Any]:
    """Each malformed kind alone in an otherwise good batch: who names it, who fails the batch."""
    out: dict[str, Any] = {}
    for kind, what in BAD_KINDS.items():
        bad, field_name = bad_message(_FixedKind(kind), good[len(good) // 2])  # type: ignore[arg-type]
        batch = list(good)
        pos = len(batch) // 2
        batch[pos] = bad
        row: dict[str, Any] = {"expected_field": field_name}
        for d in decoders:
            try:
                decoded, rejected = d.decode(batch)
                n = d.columnar(decoded).n
            except Exception as exc:
                row[d.name] = {
                    "outcome": "batch failed",
                    "error": f"{type(exc).__name__}: " + str(exc).splitlines()[0][:160],
                    "events_kept": 0,
                }
                continue
            if [i for i, _ in rejected] == [pos]:
                reason = rejected[0][1]
                named = field_name in reason if field_name != "$" else True
                row[d.name] = {
                    "outcome": "event rejected",
                    "reason": reason[:160],
                    "names_field": named,
                    "events_kept": n,
                }
            elif not rejected:
                row[d.name] = {"outcome": "accepted silently", "events_kept": n}
            else:
                row[d.name] = {"outcome": "other", "rejected": rejected[:3], "events_kept": n}
        out[what] = row
    return out


# --------------------------------------------------------------------------------------------
# report


def print_table(result: dict[str, Any]) -> None:
    n = result["messages"]
    print()
    print(
        f"{n:,} messages, mean {result['mean_message_bytes']:.0f} B, batches of {result['batch']:,}; "
        f"median of {result['repeat']} runs"
    )
    print(
        f"{'decoder':<40} {'decode ev/s':>12} {'+columnar ev/s':>15} {'vs driftline':>13} "
        f"{'per-event reasons':>18}"
    )
    base = result["decoders"]["driftline"]["decode_columnar_events_per_s"]
    for r in result["decoders"].values():
        both = r["decode_columnar_events_per_s"]
        reasons = "yes" if r["per_event_rejection_reasons"] else "NO"
        print(
            f"{r['label']:<40} {r['decode_events_per_s']:>12,.0f} {both:>15,.0f}"
            f" {both / base:>12.2f}x {reasons:>18}"
        )
    f = result["fold_for_scale"]
    print(f"{'(for scale) ModelSketch.update of the batch':<40} {'':>12} {f['events_per_s']:>15,.0f}")
    print()
    print("one malformed message in a batch of", f"{result['rejection_batch']:,}:")
    names = list(result["decoders"])
    print(f"{'malformed kind':<26}" + "".join(f"{n[:16]:>18}" for n in names))
    short = {
        "event rejected": "rejected",
        "batch failed": "BATCH FAILED",
        "accepted silently": "accepted",
        "other": "other",
    }
    for kind, row in result["rejection_matrix"].items():
        print(f"{kind:<26}" + "".join(f"{short[row[n]['outcome']]:>18}" for n in names))
    print()
    print(
        "equal to driftline's Batch on the first batch:",
        {k: v or "equal" for k, v in result["checks"]["batch_differences"].items()},
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("decode", __doc__, "50k messages, 1 repeat")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument(
        "--decimals",
        type=int,
        default=None,
        help="round floats to this many decimals (shorter messages); default: as generated",
    )
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after setup (moves import-time objects out of full collections)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 50_000, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    head = stamp("decode", argv, *MEASURED)
    head["machine"]["polars_threads"] = pl.thread_pool_size()
    t = time.perf_counter()
    messages = make_messages(args.events, args.seed, args.decimals)
    binning, kinds = make_binning(50_000, 1000)
    gen_s = time.perf_counter() - t
    sizes = np.array([len(m) for m in messages])
    print(
        f"{len(messages):,} messages ({sizes.mean():.0f} B mean, {sizes.min()}-{sizes.max()} B) "
        f"made in {gen_s:.1f} s",
        flush=True,
    )
    batches = [messages[i : i + args.batch] for i in range(0, len(messages), args.batch)]
    decoders = make_decoders(binning, kinds)
    gc.collect()
    tracked = len(gc.get_objects())
    if args.gc_freeze:
        gc.freeze()

    # correctness first: every decoder's columns equal driftline's
    ref_batch = decoders[0].columnar(decoders[0].decode(batches[0])[0])
    differences = {d.name: same_batch(ref_batch, d.columnar(d.decode(batches[0])[0])) for d in decoders}

    results = {}
    for d in decoders:
        results[d.name] = r = time_decoder(d, batches, args.repeat)
        print(
            f"  {d.label:<40} decode {r['decode_events_per_s']:>10,.0f}/s   "
            f"decode+columnar {r['decode_columnar_events_per_s']:>10,.0f}/s",
            flush=True,
        )

    # for scale: folding one decoded batch into the sketches
    sketch_times = []
    for _ in range(max(3, args.repeat)):
        sk = ModelSketch(binning)
        t = time.perf_counter()
        sk.update(ref_batch)
        sketch_times.append(time.perf_counter() - t)
    fold_s = statistics.median(sketch_times)

    matrix = rejection_matrix(decoders, batches[0])
    result = head | {
        "messages": len(messages),
        "mean_message_bytes": float(sizes.mean()),
        "message_bytes_range": [int(sizes.min()), int(sizes.max())],
        "batch": args.batch,
        "repeat": args.repeat,
        "seed": args.seed,
        "decimals": args.decimals,
        "gc_freeze": args.gc_freeze,
        "gc_tracked_objects_after_setup": tracked,
        "data": "driftline.simulate.generate(Traffic(seed, chunks of 200k)) -> simulate.events ->"
        " orjson.dumps;"
        " 20 numeric + 3 categorical features, segments region/gender, prediction, label, latency_ms;"
        " 1% of numeric values null",
        "timing": "time.perf_counter around decode(batch) and columnar(decoded) per batch, summed over the"
        " stream; median of --repeat runs after a 2-batch warm-up; gc enabled (as in the consumer);"
        " the messages themselves (bytes) are not tracked by gc",
        "decoders": results,
        "fold_for_scale": {
            "what": f"ModelSketch(binning).update(one {len(batches[0]):,}-event Batch), threads=1",
            "seconds": fold_s,
            "events_per_s": len(batches[0]) / fold_s,
        },
        "rejection_batch": len(batches[0]),
        "rejection_matrix": matrix,
        "checks": {"batch_differences": differences, "passed": not any(differences.values())},
    }
    out = write_result(out_path("decode", args), result)
    print_table(result)
    print(f"\nJSON written to {out}")
    return 0 if result["checks"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
