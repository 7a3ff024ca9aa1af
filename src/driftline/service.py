"""One driftline process: store, references, Kafka consumers, HTTP ingest, alerting.

Built from :class:`driftline.settings.Settings` at an entry point (``driftline serve``,
``driftline demo``); the API reads everything through it. ``stop()`` is the graceful shutdown:
consumers flush their panes and commit, then the alerting outbox is drained (what cannot be
delivered now stays in its journal for the next start).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

from driftline.alerting.config import AlertingConfig
from driftline.alerting.config import load as load_rules
from driftline.alerting.receivers import Transport
from driftline.alerting.runner import AlertRunner
from driftline.detectors.profile import ModelRegistry, ModelSketch, SegmentLimits
from driftline.ingest.consumer import ConsumerConfig, StreamConsumer, ensure_topics
from driftline.ingest.evaluate import OnWindow, WindowEvaluator
from driftline.ingest.files import TableSpec, load_reference
from driftline.ingest.panes import WindowSpec
from driftline.ingest.push import PushIngest
from driftline.settings import Settings
from driftline.storage.codec import reference_from_rows, reference_rows, registered
from driftline.storage.store import AlertStore, MetricRow, ModelStore, Store

log = logging.getLogger("driftline.service")


class References(dict[str, ModelSketch]):
    """Model -> reference sketch; shared by every component, refreshed in place."""

    def reload(self, store: Store) -> None:
        rows = store.references()
        fresh = {m: reference_from_rows(list(g)) for m, g in groupby(rows, key=lambda r: r.model_id)}
        self.update(fresh)


def build_reference_file(store: Store, model: str, path: str, segments: list[str]) -> ModelSketch:
    """Fit and store a reference from a file; the event fields name the roles."""
    import polars as pl

    cols = set(pl.read_parquet_schema(path)) if path.endswith((".parquet", ".pq")) else None
    spec = TableSpec(
        segments=[s for s in segments if cols is None or s in cols],
        prediction="prediction" if cols is None or "prediction" in cols else None,
        label="label" if cols is None or "label" in cols else None,
        latency="latency_ms" if cols is None or "latency_ms" in cols else None,
    )
    reference, _ = load_reference(path, spec, 1000, 10)
    store.save_reference(reference_rows(model, reference, source=path))
    return reference


class Service:
    def __init__(
        self,
        settings: Settings,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        observer: OnWindow | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.started_at = clock()
        self.store = Store.open(settings.store, ttl_days=settings.ttl_days, cluster=settings.store_cluster)
        self.alert_store = AlertStore(self.store)
        self.models = ModelStore(self.store)
        # the one copy of every model's settings: folding, windows, alerts and the API read it
        self.model_settings = ModelRegistry(
            limits=SegmentLimits(settings.segment_values, settings.segment_attributes)
        )
        self.model_settings.update(registered(self.store))
        self.references = References()
        for model, path in settings.references.items():
            segments = self.model_settings[model].segments or settings.segments
            build_reference_file(self.store, model, path, list(segments))
        self.references.reload(self.store)
        self.rules = self._rules()
        self.windows = WindowSpec(
            settings.pane_ms, settings.window_ms, settings.lateness_ms, settings.idle_ms
        )
        self.alerting = (
            AlertRunner(
                self.rules,
                self.alert_store,
                settings.outbox or self._outbox_path(),
                transport,
                clock,
                self.model_settings,
            )
            if self.rules is not None
            else None
        )
        self.observer = observer  # e.g. the demo's live printout
        self.evaluator = WindowEvaluator(
            self.store, self.references, self.windows, self.model_settings, self._on_window
        )
        self.http_ingest = PushIngest(
            self.store,
            self.references,
            self.windows,
            self.evaluator,
            "http",
            clock,
            max_future_ms=settings.http_max_future_ms,
        )
        self.consumers: list[StreamConsumer] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def _on_window(self, model: str, version: str, start: int, end: int, rows: list[MetricRow]) -> None:
        if self.alerting:
            self.alerting.on_window(model, version, start, end, rows)
        if self.observer:
            self.observer(model, version, start, end, rows)

    def _rules(self) -> AlertingConfig | None:
        return load_rules(self.settings.rules) if self.settings.rules else None  # ConfigError: file:line

    def _outbox_path(self) -> str:
        dsn = self.settings.store
        if dsn.startswith(("http://", "https://")):
            return str(Path.cwd() / "driftline-outbox.jsonl")
        return str(Path(dsn.removeprefix("chdb://")) / "outbox.jsonl")

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        if s.bootstrap:
            config = ConsumerConfig(
                bootstrap=s.bootstrap,
                topics=s.topics,
                group=s.group,
                windows=self.windows,
                flush_interval_s=s.flush_interval_ms / 1000,
                dlq_spill=self.store.local_dir / "dead-letters.jsonl",
                kafka=dict(s.kafka),
            )
            ensure_topics(config)  # KafkaUnavailable here, before any client is created
            shared = WindowEvaluator(
                self.store, self.references, self.windows, self.model_settings, self._on_window
            )
            self.consumers = [
                StreamConsumer(
                    config, self.store, self.references, self.clock, self._on_window, f"consumer-{i}", shared
                )
                for i in range(s.workers)
            ]
            self._threads += [
                threading.Thread(target=c.run, args=(self._stop,), name=f"consumer-{i}", daemon=True)
                for i, c in enumerate(self.consumers)
            ]
        if self.alerting:
            self._threads.append(
                threading.Thread(target=self.alerting.run, args=(self._stop,), name="alerting", daemon=True)
            )
        self._threads.append(threading.Thread(target=self._ticker, name="ticker", daemon=True))
        for t in self._threads:
            t.start()

    def _ticker(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.http_ingest.tick()
            except Exception:
                log.exception("http ingest tick failed")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful: consumers flush and commit, alerting drains its outbox, then the store closes."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:  # consumers first (their last flush may evaluate windows), alerting last
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        if self.alerting:
            self.alerting.close()
        self.store.close()

    # -- readiness ------------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            self.store.tables()
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unreachable: {exc}"
        if self.settings.bootstrap:
            assigned = sum(len(c.assigned) for c in self.consumers)
            dead = [t.name for t in self._threads if not t.is_alive()]
            checks["kafka"] = (
                f"stopped: {', '.join(dead)}" if dead else "ok" if assigned else "no partitions assigned"
            )
        return checks
