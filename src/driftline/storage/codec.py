"""Model sketches <-> stored rows. Sketch bytes come from the detectors; rows are storage's."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from driftline.contract import parse_ts
from driftline.detectors.categorical import CategoricalSketch, Vocabulary
from driftline.detectors.defaults import PERFORMANCE_METRICS
from driftline.detectors.fairness import FairnessSketch
from driftline.detectors.latency import LatencySketch
from driftline.detectors.numeric import NumericBins, NumericSketch
from driftline.detectors.performance import PerformanceSketch, PerformanceSpec
from driftline.detectors.profile import (
    Binning,
    ModelSettings,
    ModelSketch,
    Thresholds,
    bins_from_bytes,
    sketch_from_bytes,
)
from driftline.detectors.slice_ids import slice_id
from driftline.storage.models import ModelStore
from driftline.storage.rows import MetricRow, PaneRow, ReferenceRow
from driftline.storage.store import Store

OUTPUTS = ("prediction", "label")  # row kinds of a model's outputs; the bytes say numeric or categorical


@functools.lru_cache(maxsize=1024)  # per binning object (frozen, hashed by identity): every flush asks
def reference_id(binning: Binning) -> str:
    """Names the features' binning panes were folded on. The prediction's and label's bins and the
    performance spec are not part of it (their sketches say theirs: one of other bins is left out
    when merging), so a reference refitted with outputs keeps the panes stored before."""
    h = hashlib.sha256()
    for name in binning.features:
        bins = binning.numeric.get(name) or binning.categorical[name]
        h.update(name.encode() + b"\x00" + bins.digest)
    return h.hexdigest()[:16]


def pane_rows(
    model_id: str, model_version: str, pane_start: int, pane_ms: int, late: bool, sketch: ModelSketch
) -> list[PaneRow]:
    ref = reference_id(sketch.binning)

    def row(kind: str, feature: str, n: int, data: bytes) -> PaneRow:
        return PaneRow(kind, model_id, model_version, feature, pane_start, pane_ms, late, n, data, ref)

    rows = [
        row(
            "numeric" if isinstance(s, NumericSketch) else "categorical",
            name,
            s.n + s.n_missing,
            s.to_bytes(),
        )
        for name, s in sorted(sketch.features.items())
    ]
    rows += [row(role, "", s.n + s.n_missing, s.to_bytes()) for role, s in sorted(sketch.outputs.items())]
    rows += [
        row("segment", attr, m.n + m.n_missing, m.to_bytes()) for attr, m in sorted(sketch.mix.items()) if m.n
    ]
    if sketch.performance is not None:
        rows.append(row("performance", "", sketch.performance.n_labelled, sketch.performance.to_bytes()))
    rows.append(row("latency", "", sketch.latency.count, sketch.latency.to_bytes()))
    rows.append(row("fairness", "", sketch.n_events, sketch.fairness.to_bytes()))
    rows.append(row("events", "", sketch.n_events, b""))
    return rows


def merge_rows(binning: Binning, rows: Iterable[PaneRow]) -> ModelSketch:
    """Merge stored partials (any panes, any flushes, any consumers) into one model sketch."""
    out = ModelSketch(binning)
    ref = reference_id(binning)
    for r in rows:
        if r.reference_id != ref:
            continue  # built on another reference: not comparable (a reference was replaced)
        match r.kind:
            case "numeric":
                bins = binning.numeric.get(r.feature)
                if bins is not None:
                    out.features[r.feature] = out.features[r.feature].merge(
                        NumericSketch.from_bytes(r.sketch, bins)
                    )  # type: ignore[arg-type]
            case "categorical":
                vocab = binning.categorical.get(r.feature)
                if vocab is not None:
                    other = CategoricalSketch.from_bytes(r.sketch, vocab)
                    out.features[r.feature] = out.features[r.feature].merge(other)  # type: ignore[arg-type]
            case "prediction" | "label" if r.kind in out.outputs:
                try:
                    other = sketch_from_bytes(r.sketch, binning.outputs[r.kind])
                except ValueError:  # folded on another reference's bins
                    continue
                out.outputs[r.kind] = out.outputs[r.kind].merge(other)  # type: ignore[arg-type]
            case "segment" if r.feature in out.mix:
                mix = CategoricalSketch.from_bytes(r.sketch, binning.mix_vocabulary(r.feature))
                out.mix[r.feature] = out.mix[r.feature].merge(mix)
            case "performance" if out.performance is not None and binning.performance is not None:
                try:
                    other_perf = PerformanceSketch.from_bytes(r.sketch, binning.performance)
                except ValueError:  # another reference's spec
                    continue
                out.performance = out.performance.merge(other_perf)
            case "latency":
                out.latency = out.latency.merge(LatencySketch.from_bytes(r.sketch))
            case "fairness":
                out.fairness = out.fairness.merge(FairnessSketch.from_bytes(r.sketch))
            case "events":
                out.n_events += r.n
    return out


def reference_rows(model_id: str, reference: ModelSketch, source: str) -> list[ReferenceRow]:
    binning = reference.binning
    ref = reference_id(binning)
    rows = []
    for name, s in sorted(reference.features.items()):
        if isinstance(s, NumericSketch):
            rows.append(
                ReferenceRow(
                    model_id,
                    name,
                    "numeric",
                    binning.numeric[name].to_bytes(),
                    s.to_bytes(),
                    s.n,
                    ref,
                    source,
                )
            )
        else:
            rows.append(
                ReferenceRow(
                    model_id,
                    name,
                    "categorical",
                    binning.categorical[name].to_bytes(),
                    s.to_bytes(),
                    s.n,
                    ref,
                    source,
                )
            )
    rows.append(
        ReferenceRow(
            model_id, "", "latency", b"", reference.latency.to_bytes(), reference.n_events, ref, source
        )
    )
    rows += [
        ReferenceRow(model_id, "", role, binning.outputs[role].to_bytes(), o.to_bytes(), o.n, ref, source)
        for role, o in sorted(reference.outputs.items())
    ]
    if reference.performance is not None and binning.performance is not None:
        spec, perf = binning.performance.to_bytes(), reference.performance.to_bytes()
        n = reference.performance.n_labelled
        rows.append(ReferenceRow(model_id, "", "performance", spec, perf, n, ref, source))
    for attr, vocab in sorted(binning.segments.items()):  # most frequent first; and their mix
        mix = reference.mix[attr].to_bytes()
        rows.append(
            ReferenceRow(model_id, attr, "segment", vocab.to_bytes(), mix, len(vocab.categories), ref, source)
        )
    for attr, by_value in sorted(reference.slices.items()):  # each slice as a model of its own
        for value, part in by_value.items():
            rows += reference_rows(slice_id(model_id, attr, value), part, source)
    return rows


def reference_from_rows(rows: Sequence[ReferenceRow]) -> ModelSketch:
    numeric = {r.feature: NumericBins.from_bytes(r.bins) for r in rows if r.kind == "numeric"}
    categorical = {r.feature: Vocabulary.from_bytes(r.bins) for r in rows if r.kind == "categorical"}
    segments = {r.feature: Vocabulary.from_bytes(r.bins) for r in rows if r.kind == "segment"}
    outputs = {r.kind: bins_from_bytes(r.bins) for r in rows if r.kind in OUTPUTS}
    spec = next((PerformanceSpec.from_bytes(r.bins) for r in rows if r.kind == "performance"), None)
    binning = Binning(numeric, categorical, segments, outputs, spec)
    sketch = ModelSketch(binning)
    for r in rows:
        if r.kind in OUTPUTS:
            sketch.outputs[r.kind] = sketch_from_bytes(r.sketch, outputs[r.kind])
        elif r.kind == "performance" and spec is not None:
            sketch.performance = PerformanceSketch.from_bytes(r.sketch, spec)
        elif r.kind == "segment" and r.sketch:  # references stored before the mix was folded have none
            sketch.mix[r.feature] = CategoricalSketch.from_bytes(r.sketch, binning.mix_vocabulary(r.feature))
        elif r.kind == "numeric":
            sketch.features[r.feature] = NumericSketch.from_bytes(r.sketch, numeric[r.feature])
        elif r.kind == "categorical":
            sketch.features[r.feature] = CategoricalSketch.from_bytes(r.sketch, categorical[r.feature])
        elif r.kind == "latency":
            sketch.latency = LatencySketch.from_bytes(r.sketch)
            sketch.n_events = r.n
    return sketch


def pick_reference(
    current: ModelSketch, events: Mapping[str, int], load: Callable[[str], ModelSketch | None]
) -> tuple[ModelSketch, int]:
    """What a range is compared with: its model's reference or, when most of its events were folded
    on the bins of a reference since replaced, that one (``load``: by id; None when it was saved
    before references were kept). Also returns the range's events folded on other bins, which are
    left out: sketches on different bins do not merge. ``events``: reference id -> events."""
    ref_id = reference_id(current.binning)
    best = max(events, key=lambda r: (events[r], r == ref_id), default=ref_id)
    chosen = current if best == ref_id else (load(best) or current)
    chosen_id = reference_id(chosen.binning)
    return chosen, sum(n for r, n in events.items() if r != chosen_id)


def stored_reference(store: Store, model: str, ref_id: str) -> ModelSketch | None:
    rows = store.reference_by_id(model, ref_id)
    return reference_from_rows(rows) if rows else None


def metric_rows(
    report: dict[str, Any], model_id: str, model_version: str, window_start: int, window_end: int
) -> list[MetricRow]:
    """Flatten a drift report into the ``drift_metrics`` rows that dashboards and alerts read."""
    n_ref, n_cur = report["n_reference"], report["n_current"]
    rows: list[MetricRow] = []

    def add(
        feature: str,
        metric: str,
        value: float | None,
        p: float | None = None,
        status: str = "ok",
        explain: tuple[dict[str, Any], ...] = (),
        counts: tuple[int, int] | None = None,
    ) -> None:
        if value is not None and math.isfinite(value):
            n = counts or (n_ref, n_cur)
            rows.append(
                MetricRow(
                    model_id,
                    model_version,
                    feature,
                    window_start,
                    window_end,
                    metric,
                    float(value),
                    p,
                    n[0],
                    n[1],
                    status,
                    explain,
                )
            )

    def drift(name: str, f: dict[str, Any], prefix: str = "") -> None:
        """A feature's statistics; the prediction's and the label's as model-level metrics
        named ``prediction_psi``, ``label_ks``, ..."""
        status = "drift" if f["drift"] else "ok"
        # a feature's distribution metrics carry what moved it (model-level ones do not)
        why = tuple(f.get("explain") or ()) if name else ()
        add(name, f"{prefix}psi", f["psi"], status=status, explain=why)
        if f["psi"] is not None and "psi_dof" in f:
            # what a ``threshold: auto`` rule needs for the PSI's critical value: its degrees of
            # freedom, with the feature's own non-missing counts as n_ref / n_cur
            add(name, f"{prefix}psi_dof", f["psi_dof"], counts=(f["n_reference"], f["n"]))
        add(name, f"{prefix}js", f["js"], status=status, explain=why)
        add(name, f"{prefix}null_rate", f["null_rate"])
        if f["kind"] == "numeric":
            ks = f["ks"] or {}
            add(name, f"{prefix}ks", ks.get("statistic"), ks.get("p_value"), status, why)
            add(name, f"{prefix}wasserstein", f["wasserstein"], status=status, explain=why)
            add(name, f"{prefix}out_of_range_rate", f["out_of_range_rate"])
        elif f.get("chi2"):
            add(name, f"{prefix}chi2", f["chi2"]["statistic"], f["chi2"]["p_value"], status, why)

    for name, f in report["features"].items():
        drift(name, f)
    for role in ("prediction", "label"):
        if report.get(role):
            drift("", report[role], f"{role}_")
    performance = (report.get("performance") or {}).get("current") or {}
    for key, value in performance.items():  # accuracy, roc_auc, rmse, ...: the model's quality
        if key in PERFORMANCE_METRICS:
            add("", PERFORMANCE_METRICS[key], value)
    latency = report.get("latency") or {}
    for q in ("p50", "p90", "p95", "p99", "max", "mean"):
        add("", f"latency_{q}", latency.get(q))
    add("", "events", float(n_cur))
    dataset = report.get("dataset_drift") or {}
    add("", "drifted_share", dataset.get("drifted_share"), status="drift" if dataset.get("drift") else "ok")
    schema = report.get("schema") or {}
    if schema:
        add("", "missing_features", len(schema["missing"]))
        add("", "new_features", len(schema["new"]))
    for attr, fair in report.get("fairness", {}).items():
        for metric in ("demographic_parity_difference", "disparate_impact", "equal_opportunity_difference"):
            add(attr, metric, fair[metric])
        for group, g in fair["groups"].items():  # per group, for dashboards: feature = "attr=group"
            add(f"{attr}={group}", "positive_rate", g["positive_rate"])
            add(f"{attr}={group}", "tpr", g["tpr"])
    return rows


def model_settings(config: Mapping[str, Any]) -> ModelSettings:
    """A registration as stored (``PUT /v1/models/{id}``'s JSON) -> the settings everything uses;
    what it leaves out keeps its default."""
    default = ModelSettings()
    t = config.get("thresholds") or {}
    warmup = config.get("warmup") or {}
    return ModelSettings(
        Thresholds(
            t.get("psi", default.thresholds.psi),
            t.get("ks", default.thresholds.ks),
            t.get("min_support", default.thresholds.min_support),
            t.get("psi_alpha", default.thresholds.psi_alpha),
            t.get("ks_alpha", default.thresholds.ks_alpha),
            t.get("dataset_drift", default.thresholds.dataset_drift),
        ),
        config.get("positive_threshold", default.positive_threshold),
        config.get("positive_class", default.positive_class),
        tuple(config.get("segments") or ()),
        tuple(config.get("slices") or ()),
        warmup.get("events"),
        (parse_ts(warmup["from"]), parse_ts(warmup["to"])) if warmup.get("from") is not None else None,
        config.get("against"),
    )


def registered(store: Store) -> dict[str, ModelSettings]:
    """Every model's registration as stored, as the settings everything uses."""
    return {m: model_settings(config) for m, config in ModelStore(store).all().items()}
