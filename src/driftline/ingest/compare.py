"""``driftline compare`` on two files without holding either whole.

The tables are read a column group at a time: the reference's columns of a group are read, the
group's bins are fitted on them and the reference is folded, then the current file's same
columns are read and folded, and both are dropped before the next group. Only the sketches stay,
so memory is bounded by ``group_bytes`` (plus the sketches), not by the tables. Role columns
(segments, prediction, label, latency) and the columns to slice by are read once, as their own
group; a slice is a list of rows, and each group's columns are folded per slice on those rows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from driftline.contract import IDENTITY_FIELDS
from driftline.detectors.defaults import DEFAULT_FINE_BINS, DEFAULT_PSI_BINS, DEFAULT_SLICE_VALUES
from driftline.detectors.numeric import NumericBins, NumericSketch
from driftline.detectors.profile import (
    Batch,
    Binning,
    Comparison,
    Kind,
    ModelSketch,
    Thresholds,
    bound_segments,
    drift_report,
)
from driftline.detectors.slices import (
    Slicer,
    SliceRows,
    SliceSketches,
    fold_slices,
    join_slices,
    slice_report,
)
from driftline.ingest.files import (
    ColumnReader,
    TableError,
    TableSpec,
    coded_column,
    to_batch,
    warn_stray_text,
)

# Data of one group in flight: 128 MiB is 80 float64 columns of 200k rows. Peak memory is about
# twice that (the frame and its float64 arrays while converting), plus a column copy per fitting
# thread and the interpreter with its libraries (≈ 170 MB): 0.6 GiB on 200k x 1,000 columns.
GROUP_BYTES = 128 << 20
DEFAULT_THRESHOLDS = Thresholds()
# Width assumed for a column that is not numeric (strings: offsets plus a few characters).
_TEXT_BYTES = 24


def compare_tables(
    reference: str | Path,
    current: str | Path,
    spec: TableSpec,
    fine_bins: int = DEFAULT_FINE_BINS,
    psi_bins: int = DEFAULT_PSI_BINS,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    threads: int = 4,
    group_bytes: int = GROUP_BYTES,
    by: Sequence[str] = (),
    slice_values: int = DEFAULT_SLICE_VALUES,
    bins_from: str | Path | None = None,
) -> Comparison:
    """The :func:`drift_report` of ``current`` against ``reference`` with the sketches it compared
    (for ``--html``); the same document as fitting and folding the whole tables at once.

    ``by``: columns (of any role, or none) to slice by; the report then has ``"slices"``, the
    :func:`slice_report` of the ``slice_values`` most frequent reference values of each and
    ``<other>``, each slice folded on the bins of the whole (see :mod:`driftline.detectors.slices`).
    The columns are read with the role columns; each feature group is folded once for the whole
    and once per slice, so slicing multiplies the sketches, not the data in memory.

    ``bins_from``: fit the bins (and the segment values) on this file instead of ``reference``, as
    the stream folds every range on its model's reference bins: two exported ranges compared on
    the reference file's bins give the numbers of ``stats --against`` and of rolling references.

    Raises :class:`TableError` naming the file (and columns) for a missing or unreadable file,
    one without rows, a missing role, feature or ``by`` column, or a feature the bins cannot be
    fitted on. Both files' columns are checked before any data is read, so a reference that
    cannot be fitted is reported after a current file that lacks a column.
    """
    # Loading the fold kernel from numba's cache takes ≈0.3 s (most of it numba setting up its
    # CPU target), in the background while the first columns are read and fitted; the first
    # real fold waits for it on numba's compiler lock.
    threading.Thread(target=_load_kernels, name="load-kernels", daemon=True).start()
    ref = ColumnReader.open(reference)
    spec.check(ref.empty(), reference)
    kinds = spec.feature_kinds(ref.empty())
    fit = ColumnReader.open(bins_from) if bins_from is not None else ref
    fit_path = bins_from if bins_from is not None else reference
    if bins_from is not None:
        spec.check(fit.empty(), bins_from)
    cur = ColumnReader.open(current)
    # the current file needs the roles; a feature it lacks is folded as missing values and
    # listed in the report's schema.missing, a column the reference lacks in schema.new
    replace(spec, features=None, kinds={}).check(cur.empty(), current)
    new = new_columns(ref.schema, cur.schema, spec)
    by = list(dict.fromkeys(by))
    for path, table in ((reference, ref), (current, cur)):
        absent = [c for c in by if c not in table.schema]
        if absent:
            raise TableError(f"{path}: no column named {', '.join(map(repr, absent))} to slice by")

    ref_parts: list[ModelSketch] = []
    cur_parts: list[ModelSketch] = []
    ref_slices: list[SliceSketches] = []  # per column group, as the parts
    cur_slices: list[SliceSketches] = []
    ref_rows: SliceRows = {}
    cur_rows: SliceRows = {}
    roles = list(dict.fromkeys(spec.roles()))
    if roles or by:
        ref_frame, cur_frame = (t.read(list(dict.fromkeys([*roles, *by]))) for t in (ref, cur))
        if by:
            ref_by = {c: coded_column(ref_frame[c]) for c in by}
            slicer = Slicer.fit(ref_by, slice_values)
            ref_rows = slicer.rows(ref_by)
            cur_rows = slicer.rows({c: coded_column(cur_frame[c]) for c in by})
            del ref_by
        ref_roles, cur_roles = to_batch(ref_frame, spec, {}), to_batch(cur_frame, spec, {})
        del ref_frame, cur_frame
    if roles:
        fit_roles = to_batch(fit.read(roles), spec, {}) if bins_from is not None else ref_roles
        try:
            no_features = Binning.fit(
                {},
                {},
                segments=fit_roles.segments,
                outputs=fit_roles.outputs,
                positive_threshold=spec.positive_threshold,
                positive_class=spec.positive_class,
            )
        except ValueError as exc:
            raise TableError(f"{fit_path}: {spec.prediction} / {spec.label}: {exc}") from None
        plan = no_features.segment_plan(spec.segments)  # the groups `driftline stats` would keep
        for batch, rows, parts, slices in (
            (ref_roles, ref_rows, ref_parts, ref_slices),
            (cur_roles, cur_rows, cur_parts, cur_slices),
        ):
            batch.segments, batch.segment_overflow = bound_segments(batch.segments, plan)
            parts.append(ModelSketch(no_features).update(batch))
            slices.append(fold_slices(batch, rows, no_features))
    if roles or by:
        del ref_roles, cur_roles
    features_only = replace(spec, segments=(), prediction=None, label=None, latency=None)
    for group in _groups(kinds, ref, group_bytes):
        n = min(threads, len(group))
        columns = ref.read(list(group))
        warn_stray_text(columns, group, spec, reference)
        batch = to_batch(columns, features_only, group)
        del columns
        fit_batch = batch if bins_from is None else to_batch(fit.read(list(group)), features_only, group)
        try:
            binning = Binning.fit(fit_batch.features, group, fine_bins, psi_bins, threads=n)
        except ValueError as exc:
            raise TableError(f"{fit_path}: {exc}") from None
        del fit_batch
        ref_parts.append(ModelSketch(binning).update(batch, threads=n))
        ref_slices.append(fold_slices(batch, ref_rows, binning, n))
        del batch  # before the current file's columns are read
        present = [c for c in group if c in cur.schema]  # none: the whole group is missing
        batch = to_batch(cur.read(present), features_only, group) if present else Batch(cur.height, {})
        cur_parts.append(ModelSketch(binning).update(batch, threads=n))
        cur_slices.append(fold_slices(batch, cur_rows, binning, n))
        del batch
    whole_ref, whole_cur = ModelSketch.join(ref_parts), ModelSketch.join(cur_parts)
    comparison = Comparison(drift_report(whole_ref, whole_cur, thresholds, new), whole_ref, whole_cur)
    if by:
        ref_cut, cur_cut = join_slices(ref_slices), join_slices(cur_slices)
        comparison.report["slices"] = slice_report(ref_cut, cur_cut, thresholds)
        comparison.slices = {
            attr: {value: (ref, cur_cut[attr][value]) for value, ref in by_value.items()}
            for attr, by_value in ref_cut.items()
        }
    return comparison


def new_columns(reference: Iterable[str], current: Iterable[str], spec: TableSpec) -> list[str]:
    """The current file's columns the reference file does not have (an event's identity fields
    and excluded columns aside): features new in the current data, for the report's schema.new."""
    known = {*reference, *spec.exclude, *IDENTITY_FIELDS}
    return [c for c in current if c not in known]


def _load_kernels() -> None:
    NumericSketch(NumericBins(np.zeros(2), 1)).update(np.empty(0))


def _groups(kinds: Mapping[str, Kind], table: ColumnReader, group_bytes: int) -> Iterator[dict[str, Kind]]:
    """Consecutive features whose columns fill about ``group_bytes`` (at least one per group)."""
    group: dict[str, Kind] = {}
    size = 0
    for name, kind in kinds.items():
        width = 8 if table.schema[name].is_numeric() else _TEXT_BYTES
        if group and size + width * table.height > group_bytes:
            yield group
            group, size = {}, 0
        group[name] = kind
        size += width * table.height
    if group:
        yield group
