"""Parquet/CSV files to columnar batches (polars at the edge, numpy into the detectors)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl

from driftline.contract import IDENTITY_FIELDS, InvalidEvent, parse_ts
from driftline.detectors.categorical import as_category
from driftline.detectors.defaults import DEFAULT_FINE_BINS, DEFAULT_PSI_BINS
from driftline.detectors.fairness import to_outcome
from driftline.detectors.profile import Batch, Binning, Column, Kind, ModelSketch
from driftline.detectors.slices import Slicer, batch_columns, fold_slices

log = logging.getLogger("driftline.ingest.files")


class TableError(ValueError):
    """A file that cannot be used: missing, unreadable, empty, or without a named column."""


def read_table(path: str | Path) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise TableError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pl.read_parquet(p)
        elif suffix in (".csv", ".tsv"):
            df = pl.read_csv(p, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10_000)
        elif suffix in (".ndjson", ".jsonl"):
            df = pl.read_ndjson(p)
        else:
            raise TableError(f"{p}: unknown file type {suffix!r} (use .parquet, .csv, .tsv or .ndjson)")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TableError(f"{p}: cannot read: {str(exc).splitlines()[0]}") from None
    if df.height == 0:
        raise TableError(f"{p}: the file has no rows")
    return df


_SCAN_ERRORS = (pl.exceptions.PolarsError, OSError)


@dataclass(frozen=True)
class ColumnReader:
    """A table file read a few columns at a time: schema and row count up front, no data.

    Parquet reads only the chunks of the columns asked for. CSV and NDJSON have no column
    layout: each read is a polars lazy scan with that projection, so it parses the whole file
    again but keeps only those columns. Values and dtypes are the same as :func:`read_table`'s.
    """

    path: Path
    schema: pl.Schema
    height: int

    @classmethod
    def open(cls, path: str | Path) -> ColumnReader:
        """Raises :class:`TableError` for the same files as :func:`read_table`, with its messages."""
        p = Path(path)
        if not p.is_file():
            raise TableError(f"{p}: no such file")
        try:
            lazy = _scan(p)
            schema = lazy.collect_schema()
            height = int(lazy.select(pl.len()).collect().item())
        except _SCAN_ERRORS as exc:
            raise TableError(f"{p}: cannot read: {str(exc).splitlines()[0]}") from None
        if height == 0:
            raise TableError(f"{p}: the file has no rows")
        return cls(p, schema, height)

    def empty(self) -> pl.DataFrame:
        """No rows, every column: what :class:`TableSpec` needs to check roles and infer kinds."""
        return pl.DataFrame(schema=self.schema)

    def read(self, columns: Sequence[str]) -> pl.DataFrame:
        try:
            # one chunk per column, joined by polars' threads, so to_numpy() needs no copy
            df = _scan(self.path).select(list(columns)).collect().rechunk()
        except _SCAN_ERRORS as exc:
            raise TableError(f"{self.path}: cannot read: {str(exc).splitlines()[0]}") from None
        if df.height != self.height:  # the file changed under us
            raise TableError(f"{self.path}: cannot read: {df.height} rows now, {self.height} before")
        return df


def _scan(p: Path) -> pl.LazyFrame:
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.scan_parquet(p)
    if suffix in (".csv", ".tsv"):
        return pl.scan_csv(p, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10_000)
    if suffix in (".ndjson", ".jsonl"):
        return pl.scan_ndjson(p)
    raise TableError(f"{p}: unknown file type {suffix!r} (use .parquet, .csv, .tsv or .ndjson)")


@dataclass(frozen=True)
class TableSpec:
    """Which columns play which role. Features default to every column not given a role, except an
    event's identity (``event_id``, ``model_id``, ``model_version``, ``ts``: a file of exported events)."""

    features: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    kinds: Mapping[str, Kind] = field(default_factory=dict)
    segments: Sequence[str] = ()
    prediction: str | None = None
    label: str | None = None
    latency: str | None = None
    positive_threshold: float = 0.5
    positive_class: str = "1"

    def roles(self) -> list[str]:
        return [c for c in (*self.segments, self.prediction, self.label, self.latency) if c]

    def check(self, df: pl.DataFrame, path: str | Path) -> None:
        wanted = [*self.roles(), *(self.features or ()), *self.kinds]
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise TableError(f"{path}: no column named {', '.join(map(repr, missing))}")

    def feature_kinds(self, df: pl.DataFrame) -> dict[str, Kind]:
        taken = {*self.roles(), *self.exclude, *IDENTITY_FIELDS}
        names = list(self.features) if self.features else [c for c in df.columns if c not in taken]
        if not names:
            raise TableError("no feature columns left (every column has another role)")
        schema = df.schema  # built anew on every access: once, not per column
        return {c: self.kinds.get(c) or infer_kind(schema[c]) for c in names}


def infer_kind(dtype: pl.DataType) -> Kind:
    return "numeric" if dtype.is_numeric() else "categorical"


def warn_stray_text(df: pl.DataFrame, kinds: Mapping[str, Kind], spec: TableSpec, path: str | Path) -> None:
    """Warn about a text column that is categorical only because a few of its values are not numbers:
    one typo in a reference would otherwise turn a numeric feature's drift tests into category counts."""
    for name, kind in kinds.items():
        if kind != "categorical" or name in spec.kinds or df.schema[name] != pl.String:
            continue
        s = df[name]
        numbers = s.cast(pl.Float64, strict=False)
        stray = s.filter(numbers.is_null() & s.is_not_null())
        parsed = s.len() - numbers.null_count()
        if 0 < stray.len() <= max(3, parsed // 1000) and parsed > stray.len():
            shown = ", ".join(repr(v) for v in stray.unique(maintain_order=True).head(3))
            log.warning(
                "%s: column %r is read as categorical because of %d value(s) that are not numbers (%s); "
                "give it the kind numeric (--kind %s=numeric) to count them as type errors",
                path,
                name,
                stray.len(),
                shown,
                name,
            )


def numeric_column(s: pl.Series) -> tuple[np.ndarray, int]:
    """float64 values (NaN = missing) and the number of values that were not numbers."""
    as_float = s.cast(pl.Float64, strict=False)
    nulls = as_float.null_count()
    if nulls:  # filling copies the column: only when there is something to fill
        as_float = as_float.fill_null(np.nan)
    return as_float.to_numpy().astype(np.float64, copy=False), nulls - s.null_count()


def coded_column(s: pl.Series) -> tuple[list[str | None], np.ndarray]:
    """Dictionary encoding via Arrow: each distinct value converted once, codes per row."""
    import pyarrow as pa  # here: numeric-only tables never need it (≈0.1 s of start-up)
    import pyarrow.compute as pc

    arr = s.cast(pl.String).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    encoded = pc.dictionary_encode(arr)
    names: list[str | None] = [*encoded.dictionary.to_pylist(), None]
    codes = encoded.indices.fill_null(len(names) - 1).to_numpy(zero_copy_only=False)
    return names, codes.astype(np.int64)


def to_batch(df: pl.DataFrame, spec: TableSpec, kinds: Mapping[str, Kind]) -> Batch:
    features: dict[str, Column] = {}
    type_errors: dict[str, int] = {}
    type_error_rows: dict[str, np.ndarray] = {}
    for name, kind in kinds.items():
        if name not in df.columns:
            continue  # counted as missing by the sketch
        if kind == "numeric":
            features[name], type_errors[name] = numeric_column(df[name])
            if type_errors[name]:  # which rows, for a slice of the batch (Batch.select)
                s = df[name]
                not_numbers = s.cast(pl.Float64, strict=False).is_null() & s.is_not_null()
                type_error_rows[name] = not_numbers.to_numpy()
        else:
            features[name] = coded_column(df[name])
    batch = Batch(n=df.height, features=features, type_errors=type_errors, type_error_rows=type_error_rows)
    if spec.latency:
        batch.latency_ms = numeric_column(df[spec.latency])[0]
    if spec.prediction:
        batch.positive = _outcome(df[spec.prediction], spec)
        batch.label = _outcome(df[spec.label], spec) if spec.label else None
    batch.segments = {s: coded_column(df[s]) for s in spec.segments}  # without predictions: their values
    roles = {"prediction": spec.prediction, "label": spec.label}
    present = {role: df[c] for role, c in roles.items() if c and c in df.columns}
    for role, kind in output_kinds(present).items():
        batch.outputs[role] = (
            numeric_column(present[role])[0] if kind == "numeric" else coded_column(present[role])
        )
    return batch


def output_kinds(columns: Mapping[str, pl.Series]) -> dict[str, Kind]:
    """How the prediction and the label are compared: floats as numbers (scores, regression),
    text and bools as classes; integers are classes (class ids, a 0/1 label) except a label
    that goes with a float prediction and is not 0/1 (a regression target)."""
    kinds: dict[str, Kind] = {}
    prediction = columns.get("prediction")
    for role, s in columns.items():
        if s.dtype.is_float():
            kinds[role] = "numeric"
        elif (
            s.dtype.is_integer()
            and role == "label"
            and prediction is not None
            and prediction.dtype.is_float()
        ):
            binary = s.drop_nulls().is_in([0, 1]).all()
            kinds[role] = "categorical" if binary else "numeric"
        else:
            kinds[role] = "categorical"
    return kinds


def _outcome(s: pl.Series, spec: TableSpec) -> np.ndarray:
    if s.dtype.is_numeric():
        values = numeric_column(s)[0]
    elif s.dtype == pl.Boolean:
        values = s.cast(pl.Float64).fill_null(np.nan).to_numpy()
    else:
        values = s.cast(pl.String).to_numpy()
    return to_outcome(values, spec.positive_threshold, spec.positive_class)


def load_reference(
    path: str | Path, spec: TableSpec, fine_bins: int, psi_bins: int, by: Sequence[str] = ()
) -> tuple[ModelSketch, dict[str, Kind]]:
    """Fit the binning (and the segment values) on a reference file and fold the file into its
    sketch; with ``by``, also into the sketch of each slice (see ``detectors/slices.py``)."""
    return _fit_reference(read_table(path), spec, path, fine_bins, psi_bins, by)


def load_event_reference(
    path: str | Path,
    segments: Sequence[str],
    positive_threshold: float = 0.5,
    positive_class: str = "1",
    by: Sequence[str] = (),
    fine_bins: int = DEFAULT_FINE_BINS,
    psi_bins: int = DEFAULT_PSI_BINS,
) -> ModelSketch:
    """A reference from a file of events (as ``driftline simulate --out`` writes them): the contract's
    field names name the roles, and a role the file lacks (a reference may have no labels) is left
    out; segments are asked for by name, so a missing one is an error."""
    df = read_table(path)
    roles = {r: r if r in df.columns else None for r in ("prediction", "label", "latency_ms")}
    spec = TableSpec(
        segments=list(segments),
        prediction=roles["prediction"],
        label=roles["label"],
        latency=roles["latency_ms"],
        positive_threshold=positive_threshold,
        positive_class=positive_class,
    )
    return _fit_reference(df, spec, path, fine_bins, psi_bins, by)[0]


def fit_events_reference(
    events: Sequence[Any],
    segments: Sequence[str],
    positive_threshold: float = 0.5,
    positive_class: str = "1",
    by: Sequence[str] = (),
    source: str = "events",
) -> ModelSketch:
    """A reference fitted on decoded events (a model's first events, see ``ingest/warmup.py``): a
    feature whose values are all numbers is numeric, any other categorical; the segment attributes
    are ``segments``, or every attribute the events carry; a slice attribute the events do not
    have is left out (with a warning) rather than failing the fit."""
    seen = {f for e in events for f, v in e.features.items() if v is not None}
    empty = sorted({f for e in events for f in e.features} - seen)
    if empty:  # nothing to fit bins on: left out (a reference built later can have them)
        log.warning("%s: no value of %s in these events: not monitored", source, ", ".join(empty))
    names = sorted(seen)
    attributes = list(segments) or sorted({a for e in events for a in e.segments} - set(names))
    columns: dict[str, pl.Series] = {}
    for name in names:
        values = [e.features.get(name) for e in events]
        numeric = all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values)
        columns[name] = (
            pl.Series(name, values, pl.Float64)
            if numeric
            else pl.Series(name, [as_category(v) for v in values])
        )
    for attr in attributes:
        columns.setdefault(attr, pl.Series(attr, [e.segments.get(attr) for e in events], pl.String))
    # the outputs' columns are named apart from any feature (an event may have a feature "label")
    roles = {r: f"__driftline_{r}__" for r in ("prediction", "label", "latency")}
    outputs = {"prediction": [e.prediction for e in events], "label": [e.label for e in events],
               "latency": [e.latency_ms for e in events]}  # fmt: skip
    for role, values in outputs.items():
        if any(v is not None for v in values):
            columns[roles[role]] = _typed(roles[role], values)
    df = pl.DataFrame(list(columns.values()))
    spec = TableSpec(
        features=names,
        segments=[a for a in attributes if a not in names],
        prediction=roles["prediction"] if roles["prediction"] in columns else None,
        label=roles["label"] if roles["label"] in columns else None,
        latency=roles["latency"] if roles["latency"] in columns else None,
        positive_threshold=positive_threshold,
        positive_class=positive_class,
    )
    kinds = spec.feature_kinds(df)
    sliceable = set(spec.segments) | {n for n, k in kinds.items() if k == "categorical"}
    missing = [a for a in by if a not in sliceable]
    if missing:
        log.warning("%s: no slices by %s: the events have no such attribute", source, ", ".join(missing))
    return _fit_reference(
        df, spec, source, DEFAULT_FINE_BINS, DEFAULT_PSI_BINS, [a for a in by if a in sliceable]
    )[0]


def _typed(name: str, values: Sequence[object]) -> pl.Series:
    """Values as a file reader would type them: so an output is judged as it would be from a file
    (integers are classes, floats scores, see :func:`output_kinds`)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pl.Series(name, values, pl.Boolean)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Series(name, values, pl.Int64)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pl.Series(name, values, pl.Float64)
    return pl.Series(name, [as_category(v) for v in values], pl.String)


def _fit_reference(
    df: pl.DataFrame, spec: TableSpec, path: str | Path, fine_bins: int, psi_bins: int, by: Sequence[str] = ()
) -> tuple[ModelSketch, dict[str, Kind]]:
    spec.check(df, path)
    kinds = spec.feature_kinds(df)
    warn_stray_text(df, kinds, spec, path)
    batch = to_batch(df, spec, kinds)
    try:
        binning = Binning.fit(
            batch.features,
            kinds,
            fine_bins,
            psi_bins,
            segments=batch.segments,
            outputs=batch.outputs,
            positive_threshold=spec.positive_threshold,
            positive_class=spec.positive_class,
        )
    except ValueError as exc:
        raise TableError(f"{path}: {exc}") from None
    sketch = ModelSketch(binning).update(batch, threads=min(4, len(kinds)))
    if by:
        slicer = Slicer.of(binning, by)
        unknown = [a for a in by if a not in slicer.values]
        if unknown:
            raise TableError(f"{path}: cannot slice by {', '.join(map(repr, unknown))}: not a segment column "
                             "or a categorical feature of the reference")  # fmt: skip
        sketch.slices = fold_slices(batch, slicer.rows(batch_columns(batch, list(slicer.values))), binning)
    return sketch, kinds


def replay_messages(path: str, segments: Sequence[str], model: str | None) -> list[bytes]:
    """The events of a file in event-time order, as contract JSON: NDJSON lines as they are, or
    one event per row of a Parquet/CSV file with one column per field (``simulate --out``)."""
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
    try:
        return float(parse_ts(orjson.loads(line).get("ts")))
    except (orjson.JSONDecodeError, AttributeError, InvalidEvent):
        return 0.0
