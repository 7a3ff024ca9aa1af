"""Drift metrics of a window, recomputed from every stored partial when one of its panes closes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from driftline import metrics as prom
from driftline.detectors.profile import ModelSketch, Thresholds, drift_report
from driftline.ingest.panes import WindowSpec
from driftline.storage.codec import merge_rows, metric_rows
from driftline.storage.store import MetricRow, Store, StoreError

log = logging.getLogger("driftline.windows")
OnWindow = Callable[[str, str, int, int, list[MetricRow]], None]
Pane = tuple[str, str, int]  # model, version, pane start


class WindowEvaluator:
    def __init__(
        self,
        store: Store,
        references: Mapping[str, ModelSketch],
        spec: WindowSpec,
        thresholds: Thresholds,
        on_window: OnWindow | None = None,
    ) -> None:
        self.store = store
        self.references = references
        self.spec = spec
        self.thresholds = thresholds
        self.on_window = on_window
        self.evaluated = 0

    def evaluate(self, closed: list[Pane]) -> list[Pane]:
        """Evaluate the window ending at each closed pane; returns the panes still to do
        (the store failed: they are retried after the next flush)."""
        for i, (model, version, start) in enumerate(closed):
            end = start + self.spec.pane_ms
            begin = end - self.spec.window_ms
            reference = self.references[model]
            try:
                rows = self.store.pane_rows(model, begin, end, model_version=version)
                report = drift_report(reference, merge_rows(reference.binning, rows), self.thresholds)
                window = metric_rows(report, model, version, begin, end)
                self.store.write_metrics(window)
            except StoreError as exc:
                prom.STORE_ERRORS.labels("metrics").inc()
                log.warning("window evaluation deferred (%s)", exc)
                return closed[i:]
            self.evaluated += 1
            prom.WINDOWS_EVALUATED.labels(model).inc()
            for r in window:
                if r.metric in prom.GAUGED_METRICS and r.feature:
                    prom.DRIFT_VALUE.labels(model, r.feature, r.metric).set(r.value)
            if self.on_window is not None:
                try:
                    self.on_window(model, version, begin, end, window)
                except Exception:  # the metrics are stored; alerting's own failure must not stop ingest
                    log.exception("window hook failed for %s [%d, %d)", model, begin, end)
        return []


def range_report(
    store: Store,
    reference: ModelSketch,
    model: str,
    start: int | None,
    end: int | None,
    version: str | None = None,
    thresholds: Thresholds = Thresholds(),
) -> dict[str, object]:
    """Any time range: merge the stored panes (late ones included) and compare with the reference.

    The same JSON document as ``driftline compare``, plus ``late_events`` and the range.
    """
    rows = store.pane_rows(model, start, end, model_version=version)
    report: dict[str, object] = drift_report(reference, merge_rows(reference.binning, rows), thresholds)
    report["late_events"] = sum(r.n for r in rows if r.kind == "events" and r.late)
    report["range"] = {"from": start, "to": end, "panes": len({r.pane_start for r in rows})}
    return report
