"""A model's sketches together: the columnar batch they fold, the reference, the drift report.

``Batch`` is the seam between the edges (Kafka decoder, HTTP ingest, file readers) and the pure
statistics: columns of one model's events as numpy arrays. ``ModelSketch`` folds batches for
one set of events (a pane, a window, a reference); ``drift_report`` compares two of them and
returns the JSON document that ``driftline compare`` and ``driftline stats`` print.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from driftline.detectors import _codec, stats
from driftline.detectors.categorical import CategoricalSketch, Column, Vocabulary, dictionary_encode
from driftline.detectors.defaults import (
    DEFAULT_MIN_SUPPORT,
    DEFAULT_SEGMENT_ATTRIBUTES,
    DEFAULT_SEGMENT_VALUES,
    SEGMENT_VOCABULARY,
)
from driftline.detectors.fairness import (
    OVERFLOW_ATTRIBUTE,
    OVERFLOW_VALUE,
    FairnessSketch,
    bound_column,
    fairness_metrics,
)
from driftline.detectors.latency import LatencySketch
from driftline.detectors.numeric import DEFAULT_FINE_BINS, DEFAULT_PSI_BINS, NumericBins, NumericSketch
from driftline.detectors.performance import PerformanceSketch, PerformanceSpec, performance_report
from driftline.detectors.slice_ids import parse_slice_id

Kind = Literal["numeric", "categorical"]
FeatureSketch = NumericSketch | CategoricalSketch


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the drift verdict, and the fairness support guard.

    ``psi`` and ``ks`` are effect sizes (PSI > 0.2, KS D > 0.1). With ``psi_alpha`` a feature's PSI
    is judged against its critical value at that significance for its two sample sizes and bins
    (:func:`stats.psi_critical`); with ``ks_alpha`` its KS test drifts when the Benjamini–Hochberg
    adjusted p-value (over the report's features and outputs) is below it. ``dataset_drift``: the
    share of drifted features at which the dataset as a whole counts as drifted."""

    psi: float = 0.2
    ks: float = 0.1
    min_support: int = DEFAULT_MIN_SUPPORT
    psi_alpha: float | None = None  # None: the effect size ``psi``
    ks_alpha: float | None = None  # None: the effect size ``ks``
    dataset_drift: float = 0.5


@dataclass(frozen=True)
class SegmentLimits:
    """What fairness folds per model at most: the ``values`` most frequent values of each segment
    attribute in the reference (every other value counts as ``<other>``), of ``attributes``
    attributes. Bounds the pane sketches, the stored rows and the metric series."""

    values: int = DEFAULT_SEGMENT_VALUES
    attributes: int = DEFAULT_SEGMENT_ATTRIBUTES


@dataclass(frozen=True)
class ModelSettings:
    """How a model's events are folded and judged (registered with ``PUT /v1/models/{id}``): the
    stream, the window evaluation, the alert rules without a threshold and the API use this one."""

    thresholds: Thresholds = Thresholds()
    positive_threshold: float = 0.5  # a score at or above it is a positive prediction
    positive_class: str = "1"  # a class prediction equal to it (or true) is positive
    segments: tuple[str, ...] = ()  # the segment attributes folded; none: the reference's
    slices: tuple[str, ...] = ()  # attributes whose values are monitored as slices in the stream
    # without a reference, one is fitted on its first ``warmup_events`` events (None: the
    # service's setting; 0: never) or, with ``warmup_range``, on its events of that event-time range
    warmup_events: int | None = None
    warmup_range: tuple[int, int] | None = None
    # what the stream's windows are compared with: None, the reference; or a rolling reference
    # merged from the model's stored panes (``previous``, ``trailing:7d``, ``seasonal:1w``)
    against: str | None = None


class ModelRegistry(dict[str, ModelSettings]):
    """Model -> settings, one object shared by every component and updated in place when a model
    is registered; a model that is not registered gets ``default``."""

    def __init__(
        self, default: ModelSettings = ModelSettings(), limits: SegmentLimits = SegmentLimits()
    ) -> None:
        super().__init__()
        self.default = default
        self.limits = limits

    def __missing__(self, model: str) -> ModelSettings:
        parsed = parse_slice_id(model)  # a slice (``churn[region=south]``) is judged as its model is
        return self[parsed[0]] if parsed else self.default

    def segment_plan(self, model: str, binning: Binning) -> dict[str, frozenset[str]]:
        """The model's folded segments; its slice attributes come first (a slice needs its values)."""
        settings = self[model]
        if not settings.slices:
            return binning.segment_plan(settings.segments, self.limits)
        chosen = settings.segments or tuple(sorted(binning.segments))
        return binning.segment_plan(tuple(dict.fromkeys([*settings.slices, *chosen])), self.limits)


@dataclass
class Batch:
    """Columns of ``n`` events of one model. Every array has length ``n``."""

    n: int
    features: dict[str, Column]
    type_errors: dict[str, int] = field(default_factory=dict)
    latency_ms: np.ndarray | None = None
    segments: dict[str, Column] = field(default_factory=dict)
    positive: np.ndarray | None = None  # 1 / 0 / -1 per event, see fairness.to_outcome
    label: np.ndarray | None = None  # 1 / 0 / -1 (unknown)
    segment_overflow: dict[str, int] = field(default_factory=dict)  # entries not folded as sent, by reason
    outputs: dict[str, Column] = field(
        default_factory=dict
    )  # "prediction", "label": as the binning kinds them
    # the rows counted in ``type_errors``, per feature that has any: what :meth:`select` counts
    type_error_rows: dict[str, np.ndarray] = field(default_factory=dict)

    def select(self, rows: np.ndarray) -> Batch:
        """The batch of the rows ``rows`` selects (a boolean mask of length ``n`` or row
        indices): every column, the outputs, segments, outcomes and latency, taken row by row;
        a categorical column takes its codes and keeps the names they use. The type errors of a feature
        are counted on its ``type_error_rows``; a feature without them has none in the
        selection. ``segment_overflow`` (entries not folded as sent) is not per row: left out."""
        rows = np.asarray(rows)
        if rows.dtype == np.bool_:
            if rows.shape != (self.n,):
                raise ValueError(f"a row mask needs {self.n} entries, got {rows.shape}")
            rows = np.flatnonzero(rows)
        errors = {
            f: int(np.count_nonzero(self.type_error_rows[f][rows])) if f in self.type_error_rows else 0
            for f in self.type_errors
        }
        return Batch(
            n=len(rows),
            features={f: _take(c, rows) for f, c in self.features.items()},
            type_errors=errors,
            latency_ms=None if self.latency_ms is None else self.latency_ms[rows],
            segments={a: _take(c, rows) for a, c in self.segments.items()},
            positive=None if self.positive is None else self.positive[rows],
            label=None if self.label is None else self.label[rows],
            outputs={r: _take(c, rows) for r, c in self.outputs.items()},
            type_error_rows={f: m[rows] for f, m in self.type_error_rows.items()},
        )


def _take(column: Column, rows: np.ndarray) -> Column:
    """The rows of a column; a categorical one keeps only the names those rows have (a group
    without rows is not a group of the selection, e.g. for fairness)."""
    if not isinstance(column, tuple):
        return column[rows]
    names, codes = column
    taken = np.asarray(codes, np.int64)[rows]
    present = np.bincount(taken, minlength=len(names)) > 0
    if present.all():
        return names, taken
    renumbered = np.cumsum(present) - 1
    return [n for n, p in zip(names, present.tolist(), strict=True) if p], renumbered[taken]


NO_SEGMENTS: Mapping[str, frozenset[str]] = MappingProxyType({})  # a segment plan that folds none


def bound_segments(
    segments: Mapping[str, Column], plan: Mapping[str, frozenset[str]]
) -> tuple[dict[str, Column], dict[str, int]]:
    """Segment columns as a model folds them (see :meth:`Binning.segment_plan`): the attributes of
    ``plan`` only, each value outside its kept ones as ``<other>``; and the entries that were not
    folded as sent, by reason."""
    out: dict[str, Column] = {}
    overflow = {OVERFLOW_VALUE: 0, OVERFLOW_ATTRIBUTE: 0}
    for attr, column in segments.items():
        names, codes = _coded(column)
        if attr in plan:
            kept, kept_codes, replaced = bound_column(names, codes, plan[attr])
            out[attr] = (kept, kept_codes)
            overflow[OVERFLOW_VALUE] += replaced
        else:
            present = np.array([n is not None for n in names] or [False])
            overflow[OVERFLOW_ATTRIBUTE] += int(np.count_nonzero(present[np.asarray(codes, np.int64)]))
    return out, {k: n for k, n in overflow.items() if n}


@dataclass(frozen=True, eq=False)
class Binning:
    """How each feature is binned: fixed by the reference, shared by every sketch compared to it;
    and the reference's values of each segment attribute, most frequent first (which fairness
    groups are kept)."""

    numeric: dict[str, NumericBins]
    categorical: dict[str, Vocabulary]
    segments: dict[str, Vocabulary] = field(default_factory=dict)
    outputs: dict[str, NumericBins | Vocabulary] = field(default_factory=dict)  # prediction, label
    performance: PerformanceSpec | None = None  # with a prediction and labels in the reference

    @classmethod
    def fit(
        cls,
        columns: Mapping[str, Column],
        kinds: Mapping[str, Kind],
        fine_bins: int = DEFAULT_FINE_BINS,
        psi_bins: int = DEFAULT_PSI_BINS,
        threads: int = 1,
        segments: Mapping[str, Column] | None = None,
        outputs: Mapping[str, Column] | None = None,
        positive_threshold: float = 0.5,
        positive_class: str = "1",
    ) -> Binning:
        """Bins per feature; ``threads`` > 1 fits features in parallel (the selection and sorts
        of ``NumericBins.fit`` release the GIL). Raises the first feature's ``ValueError``.
        ``segments``: the reference's segment columns; ``outputs``: its prediction and label
        columns (a numeric one is binned, a coded one gets a vocabulary; one without any value
        is left out); with both, the performance spec (``positive_*``: what a positive is)."""

        def fit(name: str) -> NumericBins | Vocabulary:
            column = columns[name]
            if kinds[name] == "numeric" and not isinstance(column, tuple):
                return NumericBins.fit(column, fine_bins, psi_bins)
            return Vocabulary.fit(column)

        def fit_output(column: Column) -> NumericBins | Vocabulary | None:
            if isinstance(column, tuple):
                vocabulary = Vocabulary.fit(column)
                return vocabulary if vocabulary.categories else None
            finite = np.isfinite(column)
            return NumericBins.fit(column[finite], fine_bins, psi_bins) if finite.any() else None

        names = list(kinds)
        if threads > 1 and len(names) > 1:
            with ThreadPoolExecutor(min(threads, len(names))) as pool:
                fitted = list(pool.map(fit, names))
        else:
            fitted = [fit(name) for name in names]
        numeric = {n: b for n, b in zip(names, fitted, strict=True) if isinstance(b, NumericBins)}
        categorical = {n: b for n, b in zip(names, fitted, strict=True) if isinstance(b, Vocabulary)}
        values = {a: Vocabulary.fit(c, SEGMENT_VOCABULARY) for a, c in (segments or {}).items()}
        outputs = outputs or {}
        fitted_outputs = {role: fit_output(c) for role, c in outputs.items()}
        performance = None
        if "prediction" in outputs and "label" in outputs:
            performance = PerformanceSpec.fit(
                outputs["prediction"], outputs["label"], positive_threshold, positive_class, fine_bins
            )
        kept = {r: b for r, b in fitted_outputs.items() if b is not None}
        return cls(numeric, categorical, values, kept, performance)

    def kind(self, feature: str) -> Kind:
        return "numeric" if feature in self.numeric else "categorical"

    def segment_plan(
        self, attributes: Sequence[str] = (), limits: SegmentLimits = SegmentLimits()
    ) -> dict[str, frozenset[str]]:
        """Which segment values are folded, per attribute: the first ``limits.attributes`` of
        ``attributes`` (none: the reference's, by name) that the reference has values of, each
        with its ``limits.values`` most frequent values; see :func:`bound_segments`."""
        names = [a for a in (attributes or sorted(self.segments)) if a in self.segments]
        return {
            a: frozenset(self.segments[a].categories[: limits.values]) for a in names[: limits.attributes]
        }

    @property
    def features(self) -> list[str]:
        return sorted([*self.numeric, *self.categorical])

    def new_sketch(self, feature: str) -> FeatureSketch:
        if feature in self.numeric:
            return NumericSketch(self.numeric[feature])
        return CategoricalSketch(self.categorical[feature])

    def output_kind(self, role: str) -> Kind | None:
        bins = self.outputs.get(role)
        return None if bins is None else "numeric" if isinstance(bins, NumericBins) else "categorical"

    def new_output_sketch(self, role: str) -> FeatureSketch:
        bins = self.outputs[role]
        return NumericSketch(bins) if isinstance(bins, NumericBins) else CategoricalSketch(bins)

    def mix_vocabulary(self, attribute: str) -> Vocabulary:
        """The values whose mix is compared for a segment attribute: the ones fairness keeps by
        default; every other value (and ``<other>``) counts together as unseen, on both sides."""
        return Vocabulary(self.segments[attribute].categories[:DEFAULT_SEGMENT_VALUES])


class ModelSketch:
    """Sketches of every feature, latency and fairness for one set of a model's events."""

    def __init__(self, binning: Binning) -> None:
        self.binning = binning
        self.n_events = 0
        self.features: dict[str, FeatureSketch] = {f: binning.new_sketch(f) for f in binning.features}
        self.latency = LatencySketch()
        self.fairness = FairnessSketch()
        self.outputs: dict[str, FeatureSketch] = {r: binning.new_output_sketch(r) for r in binning.outputs}
        # the mix of each segment attribute, compared like a categorical feature
        self.mix = {a: CategoricalSketch(binning.mix_vocabulary(a)) for a in binning.segments}
        self.performance = PerformanceSketch(binning.performance) if binning.performance else None
        # a reference's slices (``--by``), stored under their slice ids
        self.slices: dict[str, dict[str, ModelSketch]] = {}

    def update(self, batch: Batch, threads: int = 1) -> ModelSketch:
        """Fold a batch. Features missing from the batch count as missing values."""
        self.n_events += batch.n
        names = list(self.features)
        if threads > 1 and len(names) > 1:
            # The kernels release the GIL, so features fold in parallel on threads.
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda name: self._fold(name, batch), names))
        else:
            for name in names:
                self._fold(name, batch)
        for role, sketch in self.outputs.items():
            _fold(sketch, batch.outputs.get(role), batch.n)
        for attr, column in batch.segments.items():
            if attr in self.mix:
                self.mix[attr].update_coded(*_coded(column))
        if self.performance is not None and "prediction" in batch.outputs:
            label = batch.outputs.get("label", np.full(batch.n, np.nan))  # none: n unlabelled
            self.performance.update(batch.outputs["prediction"], label)
        if batch.latency_ms is not None:
            self.latency.update(batch.latency_ms)
        if batch.segments and batch.positive is not None:
            label = batch.label if batch.label is not None else np.full(batch.n, -1, np.int8)
            self.fairness.update(batch.segments, batch.positive, label)
        return self

    def fold_labels(
        self,
        prediction: Column,
        label: Column,
        segments: Mapping[str, Column] | None = None,
        positive: np.ndarray | None = None,
        outcome: np.ndarray | None = None,
    ) -> ModelSketch:
        """Labels joined to their predictions after the fact (a label topic): only the label's
        sketch, the performance and, with ``segments`` (``positive``, ``outcome``: 1 / 0 / -1 of
        the prediction and the label), fairness's label counts; the events (and their predicted
        positives) were counted when their predictions arrived."""
        n = len(label[1]) if isinstance(label, tuple) else len(label)
        if "label" in self.outputs:
            sketch = self.outputs["label"]
            _fold(sketch, label, n)
            # their predictions counted these labels missing: merged with them, they count once
            if isinstance(sketch, NumericSketch):
                sketch.n_missing -= n
            else:
                sketch.counts[-1] -= n
        if self.performance is not None:
            self.performance.update(prediction, label).labelled_later(n)
        if segments and positive is not None and outcome is not None:
            late = FairnessSketch().update(segments, positive, outcome).label_counts()
            self.fairness = self.fairness.merge(late)
        return self

    def _fold(self, name: str, batch: Batch) -> None:
        if isinstance(self.features[name], NumericSketch) and isinstance(batch.features.get(name), tuple):
            raise TypeError(f"feature {name!r} is numeric but the batch holds categories")
        _fold(self.features[name], batch.features.get(name), batch.n, batch.type_errors.get(name, 0))

    @classmethod
    def join(cls, parts: Sequence[ModelSketch]) -> ModelSketch:
        """One sketch from sketches of the same events over disjoint features (e.g. a table folded
        a column group at a time). Latency and fairness are added up: fold them in one part only."""
        n_events = {p.n_events for p in parts}
        if len(n_events) != 1:
            raise ValueError(f"cannot join sketches of different event counts: {sorted(n_events)}")
        binning = Binning(
            {f: b for p in parts for f, b in p.binning.numeric.items()},
            {f: v for p in parts for f, v in p.binning.categorical.items()},
            {a: v for p in parts for a, v in p.binning.segments.items()},
            {r: b for p in parts for r, b in p.binning.outputs.items()},
            next((p.binning.performance for p in parts if p.binning.performance), None),
        )
        out = cls(binning)
        out.n_events = n_events.pop()
        sketches = {f: s for p in parts for f, s in p.features.items()}
        out.features = {f: sketches[f] for f in binning.features}
        for p in parts:
            out.latency = out.latency.merge(p.latency)
            out.fairness = out.fairness.merge(p.fairness)
            out.outputs = {
                r: _merge(s, p.outputs[r]) if r in p.outputs else s for r, s in out.outputs.items()
            }
            out.mix = {a: _merge(m, p.mix[a]) if a in p.mix else m for a, m in out.mix.items()}  # type: ignore[misc]
            if out.performance is not None and p.performance is not None:
                out.performance = out.performance.merge(p.performance)
        return out

    def merge(self, other: ModelSketch) -> ModelSketch:
        out = ModelSketch(self.binning)
        out.n_events = self.n_events + other.n_events
        out.features = {f: _merge(s, other.features[f]) for f, s in self.features.items()}
        out.latency = self.latency.merge(other.latency)
        out.fairness = self.fairness.merge(other.fairness)
        out.outputs = {r: _merge(s, other.outputs[r]) for r, s in self.outputs.items()}
        out.mix = {a: _merge(m, other.mix[a]) for a, m in self.mix.items()}  # type: ignore[misc]
        if self.performance is not None and other.performance is not None:
            out.performance = self.performance.merge(other.performance)
        return out


SlicePairs = dict[str, dict[str, tuple[ModelSketch, ModelSketch]]]  # attribute -> value -> (ref, cur)


@dataclass
class Comparison:
    """A drift report with the sketches it compared, the whole's and each slice's (``report["slices"]``):
    what a picture of the report (``driftline.report_html``) is drawn from."""

    report: dict[str, Any]
    reference: ModelSketch
    current: ModelSketch
    slices: SlicePairs = field(default_factory=dict)


def bins_from_bytes(data: bytes) -> NumericBins | Vocabulary:
    """Stored bins of either kind (the bytes say which)."""
    if _codec.sketch_kind(data) == _codec.KIND_NUMERIC:
        return NumericBins.from_bytes(data)
    return Vocabulary.from_bytes(data)


def sketch_from_bytes(data: bytes, bins: NumericBins | Vocabulary) -> FeatureSketch:
    if isinstance(bins, NumericBins):
        return NumericSketch.from_bytes(data, bins)
    return CategoricalSketch.from_bytes(data, bins)


def _fold(sketch: FeatureSketch, column: Column | None, n: int, type_errors: int = 0) -> None:
    """Fold one column into its sketch; an absent column is ``n`` missing values."""
    if isinstance(sketch, NumericSketch):
        if isinstance(column, tuple):  # categories where numbers were expected: all type errors
            sketch.update(np.full(n, np.nan), type_errors=type_errors + n)
            return
        sketch.update(np.full(n, np.nan) if column is None else column, type_errors=type_errors)
        return
    names, codes = ([None], np.zeros(n, np.int64)) if column is None else _coded(column)
    sketch.update_coded(names, codes)
    sketch.type_errors += type_errors


def _coded(column: Column) -> tuple[Sequence[str | None], np.ndarray]:
    return column if isinstance(column, tuple) else dictionary_encode(column)


def _merge(a: FeatureSketch, b: FeatureSketch) -> FeatureSketch:
    return a.merge(b)  # type: ignore[arg-type]


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


EXPLAIN_TOP = 5  # contributors listed per drifted feature
UNSEEN = "<unseen>"  # the bucket of categories the reference does not have


def _psi_shares(ref: FeatureSketch, cur: FeatureSketch) -> tuple[np.ndarray, np.ndarray]:
    """The reference's and the current shares of each PSI bin (numeric: the reference deciles;
    categorical: each category of the vocabulary, then the unseen ones); missing values excluded."""
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        return stats.proportions(ref.psi_counts()), stats.proportions(cur.psi_counts())
    return stats.proportions(ref.counts[:-1]), stats.proportions(cur.counts[:-1])


def edge_labels(edges: np.ndarray) -> list[str]:
    """The edges as short numbers (12.3, 15.0, 1e-05): 4 significant digits, more where two
    different edges would read the same."""
    values = [float(x) for x in edges]
    for digits in range(4, 17):
        labels = [repr(float(f"{x:.{digits}g}")) for x in values]
        if len(set(labels)) == len(set(values)):
            return labels
    return [repr(x) for x in values]


def psi_bin_labels(bins: NumericBins) -> list[str]:
    """The value range of each PSI bin: ``< e0``, ``[e0, e1)``, ..., ``>= e_last``."""
    edges = edge_labels(bins.psi_edges)
    if not edges:
        return ["all values"]
    inner = [f"[{a}, {b})" for a, b in pairwise(edges)]
    return [f"< {edges[0]}", *inner, f">= {edges[-1]}"]


def psi_contributions(ref: FeatureSketch, cur: FeatureSketch) -> list[dict[str, Any]]:
    """Every PSI bin (numeric: a value range of the reference deciles) or category (and
    ``<unseen>``) with its reference and current share and its term of the PSI; the terms sum to
    the feature's ``psi``. Empty when either side has no value or the kinds differ."""
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        labels = psi_bin_labels(ref.bins)
    elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
        labels = [*ref.vocabulary.categories, UNSEEN]
    else:
        return []
    if not (ref.n and cur.n):
        return []
    r, c = _psi_shares(ref, cur)
    terms = stats.psi_contributions(r, c)
    return [
        {"bin": label, "reference_share": float(a), "current_share": float(b), "psi": float(t)}
        for label, a, b, t in zip(labels, r.tolist(), c.tolist(), terms.tolist(), strict=True)
    ]


def explain(ref: FeatureSketch, cur: FeatureSketch, top: int = EXPLAIN_TOP) -> list[dict[str, Any]]:
    """What moved a feature: the ``top`` bins or categories contributing most to its PSI, largest
    first (ties in bin order); bins whose share did not move at all are left out."""
    moved = [t for t in psi_contributions(ref, cur) if t["psi"] > 0]
    return sorted(moved, key=lambda t: -t["psi"])[:top]


def format_movers(explanation: Sequence[Mapping[str, Any]], top: int = 3) -> str:
    """``[12.3, 15.0) 10%→25%, <unseen> 0%→4.2%``: the first ``top`` contributors, shares in %."""
    return ", ".join(
        f"{e['bin']} {e['reference_share'] * 100:.3g}%→{e['current_share'] * 100:.3g}%"
        for e in explanation[:top]
    )


def feature_report(ref: FeatureSketch, cur: FeatureSketch, n_rows: int) -> dict[str, Any]:
    """Statistics of one feature; ``drift`` and adjusted p-values are filled by drift_report."""
    missing = cur.n_missing
    out: dict[str, Any] = {
        "n": cur.n,
        "n_reference": ref.n,
        "null_rate": missing / n_rows if n_rows else None,
        "type_errors": cur.type_errors,
    }
    if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
        rc, cc = ref.psi_counts(), cur.psi_counts()
        r, c = stats.proportions(rc), stats.proportions(cc)
        ks = stats.ks(ref, cur)
        out |= {
            "kind": "numeric",
            "psi": stats.psi(r, c) if cur.n and ref.n else None,
            "psi_dof": stats.psi_dof(rc, cc),
            "ks": None
            if ks is None
            else {"statistic": ks.statistic, "statistic_upper": ks.statistic_upper, "p_value": ks.p_value},
            "js": stats.js_distance(r, c) if cur.n and ref.n else None,
            "wasserstein": _finite(stats.wasserstein(ref, cur)),
            "out_of_range_rate": cur.out_of_range / cur.n if cur.n else None,
            "mean": _finite(cur.mean),
            "std": _finite(cur.std),
            "min": _finite(float(cur.moments[0])) if cur.n else None,
            "max": _finite(float(cur.moments[1])) if cur.n else None,
        }
    elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
        rc, cc = ref.counts[:-1], cur.counts[:-1]
        r, c = stats.proportions(rc), stats.proportions(cc)
        chi = stats.chi2(rc, cc)
        out |= {
            "kind": "categorical",
            "psi": stats.psi(r, c) if cur.n and ref.n else None,
            "psi_dof": stats.psi_dof(rc, cc),
            "js": stats.js_distance(r, c) if cur.n and ref.n else None,
            "chi2": None
            if chi is None
            else {"statistic": chi.statistic, "p_value": chi.p_value, "dof": chi.dof},
            "unseen": [[name, count] for name, count in cur.top_unseen()],
            "unseen_rate": int(cur.counts[-2]) / cur.n if cur.n else None,
        }
    return out


def _psi_threshold(f: Mapping[str, Any], thresholds: Thresholds) -> float | None:
    """The PSI a feature's is judged against: the effect size, or its critical value at
    ``psi_alpha`` for its non-missing counts on both sides (None without values on both)."""
    if thresholds.psi_alpha is None:
        return thresholds.psi
    if not f["n"] or not f["n_reference"]:
        return None
    return stats.psi_critical(f["n_reference"], f["n"], f["psi_dof"] + 1, thresholds.psi_alpha)


def _absent(sketch: FeatureSketch) -> bool:
    """No value at all, only missing ones (a column of the wrong type is there: type errors)."""
    return sketch.n == 0 and sketch.n_missing > 0 and sketch.type_errors == 0


def drift_report(
    reference: ModelSketch,
    current: ModelSketch,
    thresholds: Thresholds = Thresholds(),
    new_features: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON document of ``driftline compare`` / ``driftline stats``.

    ``features`` holds every feature and, as categorical features, the mix of each segment
    attribute (a shift in the share of regions is drift; a feature of the same name wins);
    ``prediction`` and ``label`` have a feature's shape (None when the reference has none).
    Benjamini–Hochberg adjusts the p-values over all of them together. Each drifted one has
    ``explain``: its top PSI contributors (see :func:`explain`).

    Each of them says the thresholds it was judged by: ``psi_threshold`` (the effect size, or the
    critical value for its sample sizes with ``thresholds.psi_alpha``) and ``ks_threshold`` with
    ``ks_threshold_on`` (``"statistic"``: D above it; ``"p_value_adjusted"``: the adjusted p-value
    below it, with ``thresholds.ks_alpha``).

    ``dataset_drift``: the share of drifted features among the features judged (with values on
    both sides; segment mixes, outputs and features missing from the current rows are not counted)
    and whether it reaches ``thresholds.dataset_drift``. ``schema``: ``missing``, the reference's
    features without a single value in the current rows (and no type errors: a column of the
    wrong type is there); ``new``, names the current rows have that the reference does not know,
    as the caller found them (``new_features``).
    """
    pairs: dict[str, tuple[FeatureSketch, FeatureSketch]] = {
        name: (reference.features[name], sketch) for name, sketch in sorted(current.features.items())
    }
    for attr, mix in sorted(current.mix.items()):
        if attr not in pairs and attr in reference.mix:
            pairs[attr] = (reference.mix[attr], mix)
    compared: dict[str, dict[str, Any]] = {
        name: feature_report(ref, cur, current.n_events)
        | ({"role": "segment"} if name not in current.features else {})
        for name, (ref, cur) in pairs.items()
    }
    output_pairs = {
        role: (reference.outputs[role], sketch)
        for role, sketch in current.outputs.items()
        if role in reference.outputs
    }
    outputs = {role: feature_report(ref, cur, current.n_events) for role, (ref, cur) in output_pairs.items()}
    judged = [*compared.values(), *outputs.values()]
    sketches = [*pairs.values(), *output_pairs.values()]
    tests = [(f["ks"] if f["kind"] == "numeric" else f.get("chi2")) for f in judged]
    adjusted = stats.benjamini_hochberg([t["p_value"] if t else math.nan for t in tests])
    for f, (ref, cur), test, p_adj in zip(judged, sketches, tests, adjusted, strict=True):
        if test is not None:
            test["p_value_adjusted"] = p_adj
        f["psi_threshold"] = _psi_threshold(f, thresholds)
        psi_drift = f["psi"] is not None and f["psi_threshold"] is not None and f["psi"] > f["psi_threshold"]
        ks_drift = False
        if f["kind"] == "numeric":
            if thresholds.ks_alpha is None:
                f["ks_threshold"], f["ks_threshold_on"] = thresholds.ks, "statistic"
                ks_drift = bool(f["ks"]) and f["ks"]["statistic"] > thresholds.ks
            else:
                f["ks_threshold"], f["ks_threshold_on"] = thresholds.ks_alpha, "p_value_adjusted"
                ks_drift = bool(f["ks"]) and p_adj < thresholds.ks_alpha  # NaN: no verdict
        f["drift"] = bool(psi_drift or ks_drift)
        if f["drift"]:  # what moved: the bins contributing most to the PSI
            f["explain"] = explain(ref, cur)
    features = [name for name, f in compared.items() if f.get("role") != "segment"]
    missing = [n for n in features if current.n_events and _absent(current.features[n])]
    judged_features = [n for n in features if compared[n]["psi"] is not None]
    drifted = sum(compared[n]["drift"] for n in judged_features)
    share = drifted / len(judged_features) if judged_features else None
    report: dict[str, Any] = {
        "n_reference": reference.n_events,
        "n_current": current.n_events,
        "features": compared,
        "drifted_features": [name for name, f in compared.items() if f["drift"]],
        "prediction": outputs.get("prediction"),
        "label": outputs.get("label"),
        "performance": performance_report(reference.performance, current.performance),
        "thresholds": {
            "psi": thresholds.psi,
            "ks": thresholds.ks,
            "psi_alpha": thresholds.psi_alpha,
            "ks_alpha": thresholds.ks_alpha,
            "dataset_drift": thresholds.dataset_drift,
        },
        "dataset_drift": {
            "drifted_share": share,
            "threshold": thresholds.dataset_drift,
            "drift": share is not None and share >= thresholds.dataset_drift,
        },
        "schema": {"missing": missing, "new": sorted(new_features)},
        "latency": None,
        "fairness": {},
    }
    if current.latency.count or reference.latency.count:
        report["latency"] = current.latency.summary() | {"reference": reference.latency.summary()}
    report["fairness"] = {
        attr: fairness_metrics(table, thresholds.min_support)
        for attr, table in sorted(current.fairness.tables.items())
    }
    return report
