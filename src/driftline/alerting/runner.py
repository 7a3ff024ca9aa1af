"""Wires the alerting stages together: window metrics in, notifications out.

    engine.evaluate -> dispatcher.submit: group (journal, fsynced), retrain -> engine log (alerts table)
    [every tick] dispatcher.tick: each due group through [group, inhibit, silence, dedup, enqueue]
    -> sender.tick (outbox -> receivers, retry) -> notifications table

The stages are ``stages.build_pipeline()``; silences come from the store (``driftline silence``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from driftline import telemetry as prom
from driftline.alerting.config import AlertingConfig
from driftline.alerting.engine import Alert, AlertEngine, Observation
from driftline.alerting.outbox import Entry, Outbox
from driftline.alerting.pipeline import Attempt, Dispatcher, Sender
from driftline.alerting.receivers import Transport, http_transport
from driftline.alerting.stages import Silence
from driftline.detectors.profile import ModelRegistry
from driftline.links import ReportLinks
from driftline.storage.alerts import AlertStore
from driftline.storage.errors import StoreError
from driftline.storage.rows import MetricRow

log = logging.getLogger("driftline.alerting")


class AlertRunner:
    def __init__(
        self,
        config: AlertingConfig,
        alerts: AlertStore,
        outbox_path: str | Path,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        models: ModelRegistry | None = None,
        links: ReportLinks | None = None,
    ) -> None:
        """``models``: the registered settings whose thresholds rules without one compare with;
        ``links``: the API's public base URL, for (signed) links to each alert's HTML report."""
        self.config = config
        self.alerts = alerts
        self.clock = clock
        self.outbox = Outbox(outbox_path)
        self.engine = AlertEngine(config, log=alerts, models=ModelRegistry() if models is None else models)
        self.engine.restore()
        self.dispatcher = Dispatcher(config, self.outbox, silences=self._silences)
        self.sender = Sender(
            config,
            self.outbox,
            transport or http_transport(),
            record=self._record,
            on_dead=self._dead,
            links=links,
        )
        self._lock = threading.Lock()
        self._last_staleness = 0.0
        self.fired: list[Alert] = []  # what this process notified, for the demo's summary
        self._exported: set[tuple[str, str]] = set()

    def on_window(self, model: str, version: str, start: int, end: int, rows: Sequence[MetricRow]) -> None:
        """Called by the consumer after a window's metrics were stored."""
        obs = [Observation(r.model_id, r.model_version, r.feature, r.metric, r.value, r.p_value, start, end,
                           r.n_ref, r.n_cur, r.explain)
               for r in rows]  # fmt: skip
        with self._lock:
            notify = self.engine.evaluate(obs, self.clock())
            self.dispatcher.submit(notify, self.clock())  # journaled first: nothing to tell is lost
            self.fired.extend(notify)
            self._export_firing()
            self._flush_log()

    def tick(self) -> None:
        now = self.clock()
        with self._lock:
            if any(r.metric == "seconds_since_last_event" for r in self.config.rules) and (
                now - self._last_staleness >= self.config.staleness.interval
            ):
                self._last_staleness = now
                notify = self.engine.evaluate_staleness(self.alerts.last_events(), now)
                self.dispatcher.submit(notify, now)
                self.fired.extend(notify)
                self._export_firing()
                self._flush_log()
            self.dispatcher.tick(now)
        self.sender.tick(now)

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # keep notifying: one bad tick must not stop paging
                log.exception("alerting tick failed")
            stop.wait(interval_s)
        self.drain()

    def drain(self, timeout_s: float = 10.0) -> None:
        """On shutdown: flush due groups and try once more to deliver what is due."""
        deadline = time.monotonic() + timeout_s
        self.tick()
        while self.outbox.due(self.clock()) and time.monotonic() < deadline:
            time.sleep(0.2)
            self.tick()

    def close(self) -> None:
        self.outbox.close()

    def _flush_log(self) -> None:
        try:
            self.engine.flush_log()
        except StoreError as exc:
            log.warning("alert transitions not stored yet (%s); retried with the next ones", exc)

    def _export_firing(self) -> None:
        firing: Counter[tuple[str, str]] = Counter()
        for st in self.engine.states.values():
            if st.state == "firing" and st.last is not None:
                firing[(st.last.model, st.last.severity)] += 1
        for (model, severity), n in firing.items():
            prom.ALERTS_FIRING.labels(model, severity).set(n)
        for model, severity in self._exported - set(firing):
            prom.ALERTS_FIRING.labels(model, severity).set(0)
        self._exported = set(firing)

    def _silences(self, now: float) -> list[Silence]:
        return [Silence(i, m, s, e, c, b) for i, m, s, e, c, b in self.alerts.silences() if s <= now < e]

    def _record(self, attempt: Attempt) -> None:
        prom.NOTIFICATIONS.labels(attempt.receiver, attempt.outcome).inc()
        try:
            self.alerts.write_attempts([attempt])
        except Exception:
            log.exception("could not record notification attempt %s", attempt.entry_id)

    def _dead(self, e: Entry, attempt: Attempt) -> None:
        """A notification given up: counted, and stored with the alerts it carried (driftline alerts)."""
        prom.NOTIFICATIONS_DEAD.labels(e.receiver).inc()
        try:
            alerts = e.payload["alerts"] if "alerts" in e.payload else [e.payload["alert"]]
            self.alerts.write_dead(e.receiver, e.id, e.kind, e.attempts, attempt.reason, alerts)
        except Exception:
            log.exception("could not record dead notification %s", e.id)
