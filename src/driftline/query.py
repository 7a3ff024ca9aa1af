"""The read path: stored rows -> codec -> detectors, one direction, for the CLI and the API.

Nothing here writes; the stream's own window evaluation (``ingest/evaluate.py``) computes the same
reports from the same rows as windows close.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from itertools import groupby
from typing import Any

from driftline.contract import format_ts
from driftline.detectors.profile import Comparison, ModelSketch, SlicePairs, Thresholds, drift_report
from driftline.detectors.slice_ids import parse_slice_id
from driftline.detectors.slices import slice_report
from driftline.detectors.windows import rolling_range
from driftline.storage.codec import (
    merge_rows,
    pick_reference,
    reference_from_rows,
    reference_id,
    stored_reference,
)
from driftline.storage.rows import PaneRow
from driftline.storage.store import Store
from driftline.storage.warmup import WarmupStore


class References(dict[str, ModelSketch]):
    """Model -> reference sketch; shared by every component, refreshed in place."""

    def reload(self, store: Store) -> None:
        rows = store.references()
        fresh = {m: reference_from_rows(list(g)) for m, g in groupby(rows, key=lambda r: r.model_id)}
        self.update(fresh)


def warming_up(store: Store) -> dict[str, int]:
    """Models without a reference yet -> their events kept until one is fitted (warm-up)."""
    return WarmupStore(store).staged_counts()


def no_reference(store: Store, model: str) -> str:
    """Why a model has nothing to compare with: never seen, or warming up (with how far)."""
    staged = warming_up(store).get(model)
    if staged is None:
        return f"model {model!r} has no reference"
    return (
        f"model {model!r} has no reference yet: it is warming up, {staged} events kept so far; "
        "its reference is fitted on its first events once it has enough (warmup_events)"
    )


def load_references(store: Store) -> References:
    refs = References()
    refs.reload(store)
    return refs


def range_sketch(
    store: Store,
    reference: ModelSketch,
    model: str,
    start: int | None,
    end: int | None,
    version: str | None = None,
) -> ModelSketch:
    """The stored panes of ``[start, end)`` merged into one sketch on the reference's binning."""
    chunks = store.pane_row_chunks(model, start, end, version)
    return merge_rows(reference.binning, itertools.chain.from_iterable(chunks))


def compare_range(
    store: Store,
    reference: ModelSketch,
    model: str,
    start: int | None,
    end: int | None,
    version: str | None = None,
    thresholds: Thresholds | None = None,
    against: str | None = None,
) -> Comparison:
    """Any time range: merge the stored panes (late ones included) and compare with the reference;
    the report with the two sketches compared (for the HTML report's pictures).

    The same JSON document as ``driftline compare``, plus ``late_events`` and the range. The panes
    are read and merged a piece at a time (:meth:`Store.pane_row_chunks`): bounded memory, and the
    store stays free for flushes between pieces. ``against`` compares with a rolling reference
    instead (:func:`rolling_range`): the stored panes of that range, on the model's bins (no rescan).
    """
    counts = store.reference_events(model, start, end, version)
    reference, other_bins = pick_reference(reference, counts, lambda r: stored_reference(store, model, r))
    used = reference_used(store, model, reference)
    if against is not None:
        lo, hi = rolling_range(against, start, end)
        reference = range_sketch(store, reference, model, lo, hi, version)
        used = {"kind": against, "from": format_ts(lo), "to": format_ts(hi), "bins": used["reference_id"]}
    panes: set[int] = set()
    late = 0

    def rows() -> Iterator[PaneRow]:
        nonlocal late
        for chunk in store.pane_row_chunks(model, start, end, version):
            for r in chunk:
                panes.add(r.pane_start)
                late += r.n if r.kind == "events" and r.late else 0
                yield r

    merged = merge_rows(reference.binning, rows())
    report = drift_report(reference, merged, thresholds or Thresholds())
    report["late_events"] = late
    report["reference"] = used
    # events of the range folded on the bins of another reference (replaced within the range): they
    # cannot be merged with the rest, so they are left out, and said
    report["other_reference_events"] = other_bins
    report["range"] = {
        "from": None if start is None else format_ts(start),
        "to": None if end is None else format_ts(end),
        "panes": len(panes),
    }
    return Comparison(report, reference, merged)


def add_slices(comparison: Comparison, pairs: SlicePairs, thresholds: Thresholds | None = None) -> None:
    """``pairs`` (of :func:`slice_pairs`) and their ``report["slices"]`` into ``comparison``."""
    comparison.slices = pairs
    comparison.report["slices"] = _slice_report(pairs, thresholds)


def _slice_report(pairs: SlicePairs, thresholds: Thresholds | None) -> dict[str, dict[str, dict[str, Any]]]:
    reference = {a: {v: ref for v, (ref, _) in by_value.items()} for a, by_value in pairs.items()}
    current = {a: {v: cur for v, (_, cur) in by_value.items()} for a, by_value in pairs.items()}
    return slice_report(reference, current, thresholds or Thresholds())


def slice_pairs(
    store: Store,
    references: Mapping[str, ModelSketch],
    model: str,
    by: Sequence[str],
    start: int | None,
    end: int | None,
    version: str | None = None,
) -> SlicePairs:
    """Each stored reference slice of ``by`` with the stream's panes of that slice merged on its
    bins: attribute -> value -> (reference, current). Raises KeyError for an attribute the model's
    reference holds no slices of."""
    reference: dict[str, dict[str, ModelSketch]] = {}
    current: dict[str, dict[str, ModelSketch]] = {}
    for sid, sketch in references.items():
        parsed = parse_slice_id(sid)
        if parsed is None or parsed[0] != model or parsed[1] not in by:
            continue
        _, attr, value = parsed
        reference.setdefault(attr, {})[value] = sketch
        chunks = store.pane_row_chunks(sid, start, end, version)
        current.setdefault(attr, {})[value] = merge_rows(
            sketch.binning, itertools.chain.from_iterable(chunks)
        )
    missing = [a for a in by if a not in reference]
    if missing:
        raise KeyError(", ".join(missing))
    return {a: {v: (ref, current[a][v]) for v, ref in by_value.items()} for a, by_value in reference.items()}


def reference_used(store: Store, model: str, reference: ModelSketch) -> dict[str, Any]:
    """Which reference a report compared with and how it was made (its newest save)."""
    ref_id = reference_id(reference.binning)
    made = [v for v in store.reference_versions(model) if v["reference_id"] == ref_id]
    last = made[-1] if made else {}
    at = last.get("applied_from")
    return {"reference_id": ref_id, "source": last.get("source"), "created_at": at and format_ts(at)}


def metric_series(
    store: Store,
    model: str,
    metric: str,
    feature: str | None,
    start: int | None,
    end: int | None,
    step_ms: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Feature -> points of a stored window metric; with ``step_ms``, the last value per bucket."""
    series: dict[str, list[dict[str, Any]]] = {}
    for feat, window_end, value, p in store.metric_series(model, metric, feature, start, end):
        points = series.setdefault(feat, [])
        point = {"t": window_end, "value": value, "p_value": p}
        if step_ms and points and points[-1]["t"] // step_ms == window_end // step_ms:
            points[-1] = point
        else:
            points.append(point)
    return series
