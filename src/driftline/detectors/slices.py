"""Slices: a model's whole report (features, prediction, label, performance) per value of an attribute.

A slice is one value of one attribute (``region=south``); slicing by several attributes gives the
slices of each attribute separately, not of their cross product. An attribute's slices are the
reference's ``top_k`` most frequent values of it and ``<other>``: every other row (a value
outside them or one the reference never had, and a missing value).

Each slice is folded on the binning of the whole, so a current slice is compared with the
reference slice of the same value on the reference's bins, and the slices of one attribute add
up to the whole (their sketches merge into the whole's). Slicing multiplies the sketches, never
the data: a batch is folded once per slice of each attribute, each time on that slice's rows.

A slice with fewer than ``min_support`` rows on either side is reported with its statistics but
not judged: nothing in it drifted.

    >>> import numpy as np
    >>> slicer = Slicer.fit({"region": np.array(["n", "s", "s", "e"])}, top_k=1)
    >>> {v: r.tolist() for v, r in slicer.rows({"region": np.array(["s", "w", "n", "s"])})["region"].items()}
    {'s': [0, 3], '<other>': [1, 2]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.detectors.categorical import OTHER, Vocabulary, dictionary_encode
from driftline.detectors.defaults import DEFAULT_SLICE_VALUES
from driftline.detectors.profile import Batch, Binning, Column, ModelSketch, Thresholds, drift_report

SliceRows = dict[str, dict[str, np.ndarray]]  # attribute -> value -> row indices, ascending
SliceSketches = dict[str, dict[str, ModelSketch]]  # attribute -> value -> the slice's sketch
DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Slicer:
    """The slices of each attribute: its values kept, most frequent in the reference first (ties
    by name); ``<other>`` holds every other row."""

    values: Mapping[str, tuple[str, ...]]

    @classmethod
    def fit(cls, reference: Mapping[str, Column], top_k: int = DEFAULT_SLICE_VALUES) -> Slicer:
        """From the reference's column of each attribute (values, or ``(names, codes)``); a value
        spelled ``<other>`` in the data counts as other."""
        if top_k < 0:
            raise ValueError(f"top_k must be at least 0, got {top_k}")
        values = {}
        for attr, column in reference.items():
            ranked = Vocabulary.fit(column, top_k + 1).categories
            values[attr] = tuple(v for v in ranked if v != OTHER)[:top_k]
        return cls(values)

    @classmethod
    def of(cls, binning: Binning, attributes: Sequence[str], top_k: int = DEFAULT_SLICE_VALUES) -> Slicer:
        """The same slices from a reference's binning (a segment attribute's values or a categorical
        feature's categories are kept most frequent first); an attribute it has none of is left out."""
        values = {}
        for attr in attributes:
            vocabulary = binning.segments.get(attr) or binning.categorical.get(attr)
            if vocabulary is not None:
                values[attr] = tuple(v for v in vocabulary.categories if v != OTHER)[:top_k]
        return cls(values)

    def rows(self, columns: Mapping[str, Column]) -> SliceRows:
        """Per attribute, each slice's rows of a table with these columns: every kept value
        (no rows: an empty array), then ``<other>``."""
        out: SliceRows = {}
        for attr, values in self.values.items():
            column = columns[attr]
            names, codes = column if isinstance(column, tuple) else dictionary_encode(column)
            index = {v: i for i, v in enumerate(values)}
            other = len(values)
            to_slice = np.array([other if n is None else index.get(n, other) for n in names] or [other])
            ids = to_slice[np.asarray(codes, np.int64)]
            order = np.argsort(ids, kind="stable")  # each slice's rows stay in table order
            ends = np.cumsum(np.bincount(ids, minlength=other + 1))
            parts = np.split(order, ends[:-1])
            out[attr] = {v: parts[i] for i, v in enumerate(values)} | {OTHER: parts[other]}
        return out


def fold_slices(
    batch: Batch, rows: Mapping[str, Mapping[str, np.ndarray]], binning: Binning, threads: int = 1
) -> SliceSketches:
    """A sketch on ``binning`` of each slice's rows of ``batch`` (see :meth:`Slicer.rows`)."""
    return {
        attr: {
            value: ModelSketch(binning).update(batch.select(r), threads) if len(r) else ModelSketch(binning)
            for value, r in by_value.items()
        }
        for attr, by_value in rows.items()
    }


def join_slices(parts: Sequence[SliceSketches]) -> SliceSketches:
    """:meth:`ModelSketch.join` slice by slice: sketches of the same rows over disjoint columns."""
    first = parts[0]
    return {
        attr: {value: ModelSketch.join([p[attr][value] for p in parts]) for value in by_value}
        for attr, by_value in first.items()
    }


def slice_report(
    reference: Mapping[str, Mapping[str, ModelSketch]],
    current: Mapping[str, Mapping[str, ModelSketch]],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    min_support: int | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{attribute: {value: {"n_reference", "n_current", "judged", ...}}}``: each slice's
    :func:`drift_report` against the reference slice of the same value, in the order of
    ``reference`` (``<other>`` only when either side has a row of it).

    A slice with fewer than ``min_support`` rows (default ``thresholds.min_support``) on either
    side has ``judged`` false: its statistics are reported, but no feature, prediction or label
    of it drifted and its ``drifted_features`` is empty."""
    support = thresholds.min_support if min_support is None else min_support
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for attr, by_value in reference.items():
        out[attr] = {}
        for value, ref in by_value.items():
            cur = current[attr][value]
            if value == OTHER and not (ref.n_events or cur.n_events):
                continue
            judged = min(ref.n_events, cur.n_events) >= support
            report = drift_report(ref, cur, thresholds)
            if not judged:
                for f in [*report["features"].values(), report["prediction"], report["label"]]:
                    if f is not None:
                        f["drift"] = False
                        f.pop("explain", None)
                report["drifted_features"] = []
            head = {"n_reference": ref.n_events, "n_current": cur.n_events, "judged": judged}
            out[attr][value] = head | report
    return out


def batch_columns(batch: Batch, attributes: Sequence[str]) -> dict[str, Column]:
    """The by-columns of a batch: a segment attribute's or a feature's column; none: all missing."""
    missing: Column = ([None], np.zeros(batch.n, np.int64))
    return {a: batch.segments.get(a) or batch.features.get(a) or missing for a in attributes}
