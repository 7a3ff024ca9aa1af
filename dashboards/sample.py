"""A short simulated run written into a store, the way the service writes it.

Used by the dashboard tests (every panel query runs against it) and by the preview script
(``dashboards/preview.py``). The path is the stream path without a broker: simulated events are
serialised and decoded like Kafka messages, folded into panes, flushed with their offsets,
every window ending at a pane is evaluated into ``drift_metrics``, the default alert rules run
on each window, and a few notification attempts (sent, retried, failed) are recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from driftline.alerting.config import AlertingConfig, default_rules
from driftline.alerting.engine import AlertEngine, Observation
from driftline.alerting.pipeline import Attempt
from driftline.detectors.profile import Binning, ModelSketch, Thresholds, drift_report
from driftline.ingest.decode import decode
from driftline.ingest.files import TableSpec, to_batch
from driftline.ingest.panes import PaneFolder, WindowSpec
from driftline.simulate import FILE_DROP, Traffic, events, generate
from driftline.storage.alerts import AlertStore
from driftline.storage.codec import merge_rows, metric_rows, reference_rows
from driftline.storage.rows import OffsetRange
from driftline.storage.store import Store

SEGMENTS = ("region", "gender")
DRIFT_FEATURES = ("f00_normal", "f01_lognormal", "plan")
FAIRNESS_REGRESSION = "region=south"
TOPIC = "predictions"
GROUP = "driftline"


@dataclass(frozen=True)
class Sample:
    """What was written: enough for a test to pick variable values and a time range."""

    model: str
    version: str
    start_ms: int  # event time of the first event (a pane start)
    end_ms: int  # end of the last pane
    events: int
    windows: int
    features: tuple[str, ...]  # with the segment attributes: their mix drifts like a feature
    attributes: tuple[str, ...]
    window_ms: int  # a window ends at every pane end and covers [end - window_ms, end)
    traffic: Traffic  # what was simulated: ``generate(traffic)`` gives the events back


def reference_sketch(model: str, n: int = 5000) -> ModelSketch:
    """The model's reference: undrifted simulated traffic, as ``driftline reference build`` fits it."""
    df = generate(Traffic(n=n, seed=1000, model_id=model)).drop(FILE_DROP)
    spec = TableSpec(segments=SEGMENTS, prediction="prediction", label="label", latency="latency_ms")
    kinds = spec.feature_kinds(df)
    batch = to_batch(df, spec, kinds)
    return ModelSketch(Binning.fit(batch.features, kinds, segments=batch.segments)).update(batch)


def fill(
    store: Store,
    *,
    model: str = "churn",
    version: str = "v1",
    panes: int = 30,
    events_per_pane: int = 200,
    window_panes: int = 10,
    end_ms: int | None = None,
) -> Sample:
    """Write ``panes`` one-minute panes of traffic ending at ``end_ms`` (default: this minute).

    Drift (two numeric features and one categorical) and a fairness regression (scores of
    region=south drop) start halfway; windows are ``window_panes`` panes long, one per pane.
    """
    pane_ms = 60_000
    end = (end_ms if end_ms is not None else int(time.time() * 1000)) // pane_ms * pane_ms
    start = end - panes * pane_ms
    n = panes * events_per_pane
    spec = WindowSpec(pane_ms=pane_ms, window_ms=window_panes * pane_ms, lateness_ms=0, idle_ms=pane_ms)
    reference = reference_sketch(model)
    store.save_reference(reference_rows(model, reference, "dashboards.sample"))

    traffic = Traffic(
        n=n,
        seed=7,
        model_id=model,
        model_version=version,
        start_ms=start,
        rate=events_per_pane / (pane_ms / 1000),
        drift_at=0.5,
        drift_features=DRIFT_FEATURES,
        fairness_regression=FAIRNESS_REGRESSION,
    )
    decoded = [decode(orjson.dumps(e), 1 << 20) for e in events(generate(traffic))]
    folder = PaneFolder({model: reference}, spec)
    offset = 0
    for p in range(0, panes, 3):  # one flush per three panes, with the offsets it covers
        batch = decoded[p * events_per_pane : (p + 3) * events_per_pane]
        folder.fold(batch, (TOPIC, 0))
        rows, _ = folder.take_rows((TOPIC, 0))
        store.write_flush(GROUP, rows, OffsetRange(TOPIC, 0, offset, offset + len(batch) - 1))
        offset += len(batch)

    engine = AlertEngine(AlertingConfig(rules=default_rules([])), log=AlertStore(store))
    windows = 0
    for p in range(panes):
        w_end = start + (p + 1) * pane_ms
        w_start = w_end - spec.window_ms
        current = merge_rows(reference.binning, store.pane_rows(model, w_start, w_end, model_version=version))
        rows = metric_rows(drift_report(reference, current, Thresholds()), model, version, w_start, w_end)
        store.write_metrics(rows)
        engine.evaluate(
            [
                Observation(
                    r.model_id,
                    r.model_version,
                    r.feature,
                    r.metric,
                    r.value,
                    r.p_value,
                    r.window_start,
                    r.window_end,
                )
                for r in rows
            ],
            now=w_end / 1000,
        )
        engine.flush_log()
        windows += 1

    now = time.time()
    AlertStore(store).write_attempts(
        [
            Attempt("ml-team", "e1", "group", 1, "sent", 200, "ok", now),
            Attempt("oncall", "e2", "alert", 1, "retry", 503, "Service Unavailable", now),
            Attempt("oncall", "e2", "alert", 2, "sent", 202, "accepted", now),
            Attempt("retrain-airflow", "e3", "retrain", 1, "failed", 400, "dag not found", now),
        ]
    )
    return Sample(
        model=model,
        version=version,
        start_ms=start,
        end_ms=end,
        events=n,
        windows=windows,
        features=tuple(sorted({*reference.binning.features, *reference.binning.segments})),
        attributes=SEGMENTS,
        window_ms=spec.window_ms,
        traffic=traffic,
    )
