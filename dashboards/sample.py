"""A short simulated run written into a store, the way the service writes it.

Used by the dashboard tests (every panel query runs against it) and by the preview script
(``dashboards/preview.py``). The path is the stream path without a broker: simulated events are
serialised and decoded like Kafka messages, folded into panes, flushed with their offsets,
every window ending at a pane is evaluated into ``drift_metrics``, the default alert rules run
on each window, and a few notification attempts (sent, retried, failed) are recorded.

The references carry the prediction and the label, so every window also stores their drift
(``prediction_psi``, ``label_psi``, ...) and the quality of its labelled events (``accuracy``,
``roc_auc``, ... for the binary classifier of :func:`fill`; ``mae``, ``rmse``, ... for the
regression model of :func:`fill_regression`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import orjson
import polars as pl

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
REGRESSION_MODEL = "price"
REGRESSION_SCALE = 100.0  # the regression model predicts 100 × the simulated score
REGRESSION_NOISE = 5.0  # standard deviation of label − prediction
REGRESSION_BIAS = 10.0  # what the labels gain from the drift on: the model underestimates


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
    traffic: Traffic  # what was simulated: ``frame()`` gives the events back
    reference: ModelSketch  # what every window was compared with
    task: str = "binary"  # or "regression": the events of ``traffic`` through :func:`as_regression`

    def frame(self) -> pl.DataFrame:
        """The simulated events, as streamed."""
        df = generate(self.traffic)
        return as_regression(df, self.traffic.drift_at) if self.task == "regression" else df


def as_regression(df: pl.DataFrame, drift_at: float | None = None) -> pl.DataFrame:
    """Simulated events as a regression model's: the prediction is ``REGRESSION_SCALE`` × the score,
    the label the prediction plus normal noise (seeded by the row count) and, from ``drift_at`` on,
    ``REGRESSION_BIAS``."""
    n = df.height
    prediction = df["prediction"].to_numpy() * REGRESSION_SCALE
    label = prediction + np.random.default_rng(n).normal(0.0, REGRESSION_NOISE, n)
    if drift_at is not None:
        label[int(n * drift_at) :] += REGRESSION_BIAS
    return df.with_columns(prediction=pl.Series(prediction), label=pl.Series(label))


def reference_sketch(model: str, n: int = 5000, regression: bool = False) -> ModelSketch:
    """The model's reference: undrifted simulated traffic, as ``driftline reference build`` fits it,
    with its prediction and label (their drift and the model's quality are measured against it)."""
    df = generate(Traffic(n=n, seed=1000, model_id=model)).drop(FILE_DROP)
    if regression:
        df = as_regression(df)
    spec = TableSpec(segments=SEGMENTS, prediction="prediction", label="label", latency="latency_ms")
    kinds = spec.feature_kinds(df)
    batch = to_batch(df, spec, kinds)
    binning = Binning.fit(
        batch.features,
        kinds,
        segments=batch.segments,
        outputs=batch.outputs,
        positive_threshold=spec.positive_threshold,
        positive_class=spec.positive_class,
    )
    return ModelSketch(binning).update(batch)


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
    spec = WindowSpec(pane_ms=pane_ms, window_ms=window_panes * pane_ms, lateness_ms=0, idle_ms=pane_ms)
    reference = reference_sketch(model)
    traffic = Traffic(
        n=panes * events_per_pane,
        seed=7,
        model_id=model,
        model_version=version,
        start_ms=start,
        rate=events_per_pane / (pane_ms / 1000),
        drift_at=0.5,
        drift_features=DRIFT_FEATURES,
        fairness_regression=FAIRNESS_REGRESSION,
    )
    sample = _sample(traffic, reference, spec, start, end, panes)
    engine = AlertEngine(AlertingConfig(rules=default_rules([])), log=AlertStore(store))
    stream(store, reference, sample, spec, partition=0, engine=engine)

    now = time.time()
    AlertStore(store).write_attempts(
        [
            Attempt("ml-team", "e1", "group", 1, "sent", 200, "ok", now),
            Attempt("oncall", "e2", "alert", 1, "retry", 503, "Service Unavailable", now),
            Attempt("oncall", "e2", "alert", 2, "sent", 202, "accepted", now),
            Attempt("retrain-airflow", "e3", "retrain", 1, "failed", 400, "dag not found", now),
        ]
    )
    return sample


def _sample(
    traffic: Traffic,
    reference: ModelSketch,
    spec: WindowSpec,
    start: int,
    end: int,
    panes: int,
    task: str = "binary",
) -> Sample:
    return Sample(
        model=traffic.model_id,
        version=traffic.model_version,
        start_ms=start,
        end_ms=end,
        events=traffic.n,
        windows=panes,
        features=tuple(sorted({*reference.binning.features, *reference.binning.segments})),
        attributes=SEGMENTS,
        window_ms=spec.window_ms,
        traffic=traffic,
        reference=reference,
        task=task,
    )


def fill_regression(
    store: Store,
    *,
    model: str = REGRESSION_MODEL,
    version: str = "v1",
    panes: int = 10,
    events_per_pane: int = 100,
    window_panes: int = 5,
    end_ms: int | None = None,
) -> Sample:
    """A second, smaller model next to :func:`fill`'s: a regressor (see :func:`as_regression`) whose
    labels move up by ``REGRESSION_BIAS`` halfway, so its error grows; no alert rules run."""
    pane_ms = 60_000
    end = (end_ms if end_ms is not None else int(time.time() * 1000)) // pane_ms * pane_ms
    start = end - panes * pane_ms
    spec = WindowSpec(pane_ms=pane_ms, window_ms=window_panes * pane_ms, lateness_ms=0, idle_ms=pane_ms)
    reference = reference_sketch(model, n=2000, regression=True)
    traffic = Traffic(
        n=panes * events_per_pane,
        seed=11,
        model_id=model,
        model_version=version,
        start_ms=start,
        rate=events_per_pane / (pane_ms / 1000),
        drift_at=0.5,
    )
    sample = _sample(traffic, reference, spec, start, end, panes, task="regression")
    stream(store, reference, sample, spec, partition=1)
    return sample


def stream(
    store: Store,
    reference: ModelSketch,
    sample: Sample,
    spec: WindowSpec,
    partition: int,
    engine: AlertEngine | None = None,
) -> None:
    """The stream path for ``sample``'s events: serialised and decoded like Kafka messages (from
    ``partition`` of the topic), folded into panes, flushed three panes at a time with the offsets
    they cover; then every window ending at a pane end evaluated into ``drift_metrics`` against
    ``reference`` and, with an ``engine``, by the alert rules."""
    model, version, start = sample.model, sample.version, sample.start_ms
    store.save_reference(reference_rows(model, reference, "dashboards.sample"))
    panes = sample.windows
    per_pane = sample.events // panes
    decoded = [decode(orjson.dumps(e), 1 << 20) for e in events(sample.frame())]
    folder = PaneFolder({model: reference}, spec)
    offset = 0
    for p in range(0, panes, 3):  # one flush per three panes, with the offsets it covers
        batch = decoded[p * per_pane : (p + 3) * per_pane]
        folder.fold(batch, (TOPIC, partition))
        panes_rows, _ = folder.take_rows((TOPIC, partition))
        store.write_flush(GROUP, panes_rows, OffsetRange(TOPIC, partition, offset, offset + len(batch) - 1))
        offset += len(batch)

    for p in range(panes):
        w_end = start + (p + 1) * spec.pane_ms
        w_start = w_end - spec.window_ms
        current = merge_rows(reference.binning, store.pane_rows(model, w_start, w_end, model_version=version))
        rows = metric_rows(drift_report(reference, current, Thresholds()), model, version, w_start, w_end)
        store.write_metrics(rows)
        if engine is None:
            continue
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
