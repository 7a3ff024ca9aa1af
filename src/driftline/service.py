"""The one place that wires driftline: store, references, Kafka consumers, pushed ingest, alerting.

Built from :class:`driftline.settings.Settings` at an entry point (``driftline serve``,
``consume``, ``replay``, ``demo``); the API reads everything through it. ``stop()`` is the
graceful shutdown: consumers flush their panes and commit, then the alerting outbox is drained
(what cannot be delivered now stays in its journal for the next start).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from driftline.alerting.config import AlertingConfig
from driftline.alerting.config import load as load_rules
from driftline.alerting.receivers import Transport
from driftline.alerting.runner import AlertRunner
from driftline.detectors.profile import ModelRegistry, ModelSettings, SegmentLimits, Thresholds
from driftline.ingest.consumer import ConsumerConfig, StreamConsumer, ensure_topics
from driftline.ingest.evaluate import OnWindow, WindowEvaluator
from driftline.ingest.files import load_event_reference
from driftline.ingest.labels import LabelConfig, LabelConsumer, LabelJoiner
from driftline.ingest.panes import WindowSpec
from driftline.ingest.push import PushIngest
from driftline.ingest.warmup import Bootstrapper
from driftline.links import ReportLinks, link_key
from driftline.query import References
from driftline.settings import Settings
from driftline.storage.alerts import AlertStore
from driftline.storage.codec import reference_rows, registered
from driftline.storage.models import ModelStore
from driftline.storage.rows import MetricRow
from driftline.storage.store import Store

log = logging.getLogger("driftline.service")
STREAM_TOTALS = ("accepted", "rejected", "late", "flushes", "superseded")


def open_store(dsn: str) -> Store:
    """The store alone, for commands that only read or edit it (stats, alerts, silences, references)."""
    return Store.open(dsn)


class NoReference(Exception):
    """Nothing to compare with: no model has a reference, and none warms up (``warmup_events=0``)."""


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
        try:
            self._build(transport, observer)
        except BaseException:
            self.store.close()  # a bad reference or rules file: leave the store free for the next try
            raise

    def _build(self, transport: Transport | None, observer: OnWindow | None) -> None:
        settings, clock = self.settings, self.clock
        self.alert_store = AlertStore(self.store)
        self.models = ModelStore(self.store)
        # the one copy of every model's settings: folding, windows, alerts and the API read it
        self.model_settings = ModelRegistry(
            ModelSettings(
                Thresholds(settings.psi_threshold, settings.ks_threshold, settings.min_support),
                slices=tuple(settings.slices),
                against=settings.against,
            ),
            SegmentLimits(settings.segment_values, settings.segment_attributes),
        )
        self.model_settings.update(registered(self.store))
        for model, path in settings.references.items():
            model_settings = self.model_settings[model]
            reference = load_event_reference(
                path,
                model_settings.segments or settings.segments,
                model_settings.positive_threshold,
                model_settings.positive_class,
                model_settings.slices,
            )
            self.store.save_reference(reference_rows(model, reference, source=path))
        self.references = References()
        self.references.reload(self.store)
        self._references_saved = self.store.references_saved()
        self.rules = self._rules()
        # notifications link each alert's HTML report, signed to open without an API key
        self.link_key = link_key(settings.api_keys) if settings.api_keys and not settings.open_mode else None
        self.report_links = (
            ReportLinks(settings.public_base_url, self.link_key) if settings.public_base_url else None
        )
        self.windows = WindowSpec(
            settings.pane_ms, settings.window_ms, settings.lateness_ms, settings.idle_ms
        )
        # models seen without a reference get one fitted on their first events (ingest/warmup.py)
        self.bootstrapper = Bootstrapper(
            self.store,
            self.references,
            self.model_settings,
            lambda: self.references.reload(self.store),
            settings.warmup_events,
            tuple(settings.segments),
            self.windows,
            self.keep_predictions_ms,
            settings.warmup_max_models,
        )
        self.alerting = (
            AlertRunner(
                self.rules,
                self.alert_store,
                settings.outbox or self.outbox_path(),
                transport,
                clock,
                self.model_settings,
                self.report_links,
            )
            if self.rules is not None
            else None
        )
        self.observer = observer  # e.g. the demo's live printout
        self.evaluator = WindowEvaluator(
            self.store, self.references, self.windows, self.model_settings, self._on_window
        )
        self.http_ingest = self._push_ingest("http", settings.http_max_future_ms)
        # the one label joiner of the process (label topic and HTTP labels): the pushed path's
        # evaluator, and the stream's once the consumers start
        self.label_joiner = (
            LabelJoiner(
                self.store, self.references, [self.evaluator], settings.pane_ms, settings.label_horizon_ms
            )
            if settings.http_labels or settings.label_topic
            else None
        )
        self.http_labels = self.label_joiner if settings.http_labels else None
        self.consumers: list[StreamConsumer] = []
        self.stream_evaluator: WindowEvaluator | None = None
        self.labels: LabelConsumer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def _push_ingest(self, source: str, max_future_ms: int | None) -> PushIngest:
        return PushIngest(
            self.store,
            self.references,
            self.windows,
            self.evaluator,
            source,
            self.clock,
            max_future_ms=max_future_ms,
            keep_predictions_ms=self.keep_predictions_ms,
            bootstrapper=self.bootstrapper,
        )

    @property
    def keep_predictions_ms(self) -> int | None:
        """Labels are joined later (a label topic, HTTP labels): predictions are kept this long."""
        s = self.settings
        return s.label_horizon_ms if s.label_topic or s.http_labels else None

    def _on_window(self, model: str, version: str, start: int, end: int, rows: list[MetricRow]) -> None:
        if self.alerting:
            self.alerting.on_window(model, version, start, end, rows)
        if self.observer:
            self.observer(model, version, start, end, rows)

    def _rules(self) -> AlertingConfig | None:
        return load_rules(self.settings.rules) if self.settings.rules else None  # ConfigError: file:line

    def outbox_path(self) -> str:
        """The notification journal when none is configured: beside an embedded store, else the cwd."""
        dsn = self.settings.store
        if dsn.startswith(("http://", "https://")):
            return str(Path.cwd() / "driftline-outbox.jsonl")
        return str(Path(dsn.removeprefix("chdb://")) / "outbox.jsonl")

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, idle_exit_s: float | None = None) -> None:
        """Start the consumers (with ``bootstrap``), alerting and the ticker of pushed ingest.
        ``idle_exit_s``: consumers leave once nothing arrived for that long (``consume --idle-exit``)."""
        s = self.settings
        if s.bootstrap:
            config = ConsumerConfig(
                bootstrap=s.bootstrap,
                topics=s.topics,
                group=s.group,
                windows=self.windows,
                dlq_suffix=s.dlq_suffix,
                batch_size=s.batch_size,
                flush_interval_s=s.flush_interval_ms / 1000,
                instance_id=s.instance_id,
                dlq_spill=self.store.local_dir / "dead-letters.jsonl",
                kafka=dict(s.kafka),
                keep_predictions_ms=self.keep_predictions_ms,
            )
            # KafkaUnavailable here, before any client is created
            ensure_topics(config, [s.label_topic] if s.label_topic else [])
            # one evaluator for the members of this process: each window is computed once
            shared = WindowEvaluator(
                self.store, self.references, self.windows, self.model_settings, self._on_window
            )
            self.stream_evaluator = shared
            if self.label_joiner is not None:  # labels for predictions from Kafka too
                self.label_joiner.evaluators.append(shared)
            self.consumers = [
                StreamConsumer(
                    config,
                    self.store,
                    self.references,
                    self.clock,
                    self._on_window,
                    f"consumer-{i}",
                    shared,
                    bootstrapper=self.bootstrapper,
                )
                for i in range(s.workers)
            ]
            self._threads += [
                threading.Thread(
                    target=c.run, args=(self._stop, idle_exit_s), name=f"consumer-{i}", daemon=True
                )
                for i, c in enumerate(self.consumers)
            ]
            if s.label_topic:
                labels = LabelConfig(
                    s.bootstrap,
                    s.label_topic,
                    s.group,
                    s.pane_ms,
                    s.label_horizon_ms,
                    s.dlq_suffix,
                    config.dlq_spill,
                    s.batch_size,
                    kafka=dict(s.kafka),
                )
                self.labels = LabelConsumer(
                    labels, self.store, self.references, shared, self.clock, self.label_joiner
                )
                self._threads.append(
                    threading.Thread(
                        target=self.labels.run, args=(self._stop, idle_exit_s), name="labels", daemon=True
                    )
                )
        if self.alerting:
            self._threads.append(
                threading.Thread(target=self.alerting.run, args=(self._stop,), name="alerting", daemon=True)
            )
        self._threads.append(threading.Thread(target=self._ticker, name="ticker", daemon=True))
        for t in self._threads:
            t.start()

    def request_stop(self) -> None:
        """From a signal handler: consumers flush and leave; :meth:`stop` finishes the shutdown."""
        self._stop.set()

    def consume(self, idle_exit_s: float | None = None) -> dict[str, int]:
        """``driftline consume``: run the consumers until :meth:`request_stop` (or idle exit), then
        shut down gracefully; returns the stream's totals."""
        if not self.references and not self.settings.warmup_events:
            raise NoReference(
                "no model has a reference and warm-up is off (--warmup-events 0): pass --reference "
                "MODEL=PATH, run 'driftline reference build', or let models warm up"
            )
        self.start(idle_exit_s)
        members = [t for t in self._threads if t.name.startswith("consumer-") or t.name == "labels"]
        while any(t.is_alive() for t in members):
            for t in members:
                t.join(timeout=0.5)
        self.stop()
        totals = {k: sum(c.stats[k] for c in self.consumers) for k in STREAM_TOTALS}
        totals["windows_evaluated"] = self.stream_evaluator.evaluated if self.stream_evaluator else 0
        if self.labels is not None:
            totals |= {f"labels_{k}": v for k, v in sorted(self.labels.stats.items())}
        return totals

    def replay(
        self, messages: Sequence[bytes], batch_size: int, progress: Callable[[int], None] = lambda n: None
    ) -> dict[str, int]:
        """``driftline replay``: backfill events through the pushed path (event-time windows, any
        period), then evaluate what is due and deliver alerts; returns the totals."""
        ingest = self._push_ingest("replay", None)
        totals = {"accepted": 0, "rejected": 0, "late": 0}
        for i in range(0, len(messages), batch_size):
            batch = messages[i : i + batch_size]
            # the same batch replayed twice is stored once; an edited file is new data
            result = ingest.ingest(batch, hashlib.sha256(b"\n".join(batch)).hexdigest())
            totals["accepted"] += result.accepted
            totals["rejected"] += len(result.errors)
            totals["late"] += result.late
            if result.staged:  # a model warming up: fit its reference as soon as it has enough
                ingest.warm_up()
            progress(len(batch))
        ingest.finish()
        if self.alerting:
            self.alerting.drain()
        totals["windows_evaluated"] = self.evaluator.evaluated
        return totals

    def _ticker(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.reload_references()
                self.http_ingest.tick()
                if self.http_labels is not None and self.labels is None:  # else the consumer sweeps
                    self.http_labels.sweep()
            except Exception:
                log.exception("http ingest tick failed")

    def reload_references(self) -> None:
        """A reference saved by another process (``reference build``, another replica's API) applies
        here too: events from now on are folded on its bins."""
        saved = self.store.references_saved()
        if saved > self._references_saved:
            self._references_saved = saved
            self.references.reload(self.store)
            log.info("references reloaded: a reference was saved at %d", saved)

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
