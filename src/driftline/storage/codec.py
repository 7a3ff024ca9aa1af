"""Model sketches <-> stored rows. Sketch bytes come from the detectors; rows are storage's."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from driftline.detectors.categorical import CategoricalSketch, Vocabulary
from driftline.detectors.fairness import FairnessSketch
from driftline.detectors.latency import LatencySketch
from driftline.detectors.numeric import NumericBins, NumericSketch
from driftline.detectors.profile import Binning, ModelSettings, ModelSketch, Thresholds
from driftline.storage.models import ModelStore
from driftline.storage.rows import MetricRow, PaneRow, ReferenceRow
from driftline.storage.store import Store


def reference_id(binning: Binning) -> str:
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
    rows += [  # the segment values, most frequent first (feature = the attribute)
        ReferenceRow(model_id, attr, "segment", vocab.to_bytes(), b"", len(vocab.categories), ref, source)
        for attr, vocab in sorted(binning.segments.items())
    ]
    return rows


def reference_from_rows(rows: Sequence[ReferenceRow]) -> ModelSketch:
    numeric = {r.feature: NumericBins.from_bytes(r.bins) for r in rows if r.kind == "numeric"}
    categorical = {r.feature: Vocabulary.from_bytes(r.bins) for r in rows if r.kind == "categorical"}
    segments = {r.feature: Vocabulary.from_bytes(r.bins) for r in rows if r.kind == "segment"}
    sketch = ModelSketch(Binning(numeric, categorical, segments))
    for r in rows:
        if r.kind == "numeric":
            sketch.features[r.feature] = NumericSketch.from_bytes(r.sketch, numeric[r.feature])
        elif r.kind == "categorical":
            sketch.features[r.feature] = CategoricalSketch.from_bytes(r.sketch, categorical[r.feature])
        elif r.kind == "latency":
            sketch.latency = LatencySketch.from_bytes(r.sketch)
            sketch.n_events = r.n
    return sketch


def metric_rows(
    report: dict[str, Any], model_id: str, model_version: str, window_start: int, window_end: int
) -> list[MetricRow]:
    """Flatten a drift report into the ``drift_metrics`` rows that dashboards and alerts read."""
    n_ref, n_cur = report["n_reference"], report["n_current"]
    rows: list[MetricRow] = []

    def add(
        feature: str, metric: str, value: float | None, p: float | None = None, status: str = "ok"
    ) -> None:
        if value is not None and math.isfinite(value):
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
                    n_ref,
                    n_cur,
                    status,
                )
            )

    for name, f in report["features"].items():
        status = "drift" if f["drift"] else "ok"
        add(name, "psi", f["psi"], status=status)
        add(name, "js", f["js"], status=status)
        add(name, "null_rate", f["null_rate"])
        if f["kind"] == "numeric":
            ks = f["ks"] or {}
            add(name, "ks", ks.get("statistic"), ks.get("p_value"), status)
            add(name, "wasserstein", f["wasserstein"], status=status)
            add(name, "out_of_range_rate", f["out_of_range_rate"])
        elif f.get("chi2"):
            add(name, "chi2", f["chi2"]["statistic"], f["chi2"]["p_value"], status)
    latency = report.get("latency") or {}
    for q in ("p50", "p90", "p95", "p99", "max", "mean"):
        add("", f"latency_{q}", latency.get(q))
    add("", "events", float(n_cur))
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
    return ModelSettings(
        Thresholds(
            t.get("psi", default.thresholds.psi),
            t.get("ks", default.thresholds.ks),
            t.get("min_support", default.thresholds.min_support),
        ),
        config.get("positive_threshold", default.positive_threshold),
        config.get("positive_class", default.positive_class),
        tuple(config.get("segments") or ()),
    )


def registered(store: Store) -> dict[str, ModelSettings]:
    """Every model's registration as stored, as the settings everything uses."""
    return {m: model_settings(config) for m, config in ModelStore(store).all().items()}
