"""Bootstrap references: a model seen without one is watched from its own first events.

Until its reference exists, a model's events are *staged*: packed into the partition's flush
(``storage/warmup.py``), stored with its offsets in one insert, so a crash during the warm-up
loses and repeats nothing. :class:`Bootstrapper` (one per process) fits the reference once the
model has ``warmup_events`` staged events (the first N by event time) or, with a
``warmup_range``, once event time passed its end (the events of that range), and stores it as a
new reference version. Each consumer then *drains* its partitions' staged events: folds them on
the new reference and writes their panes with a marker per staged row, fenced like any flush.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from driftline import telemetry as prom
from driftline.contract import MAX_EVENT_BYTES, InvalidEvent, format_ts
from driftline.detectors.profile import ModelRegistry, ModelSketch
from driftline.ingest.decode import AnyEvent, decode
from driftline.ingest.files import TableError, fit_events_reference
from driftline.ingest.labels import event_prediction_rows
from driftline.ingest.panes import PaneFolder, PaneKey, WindowSpec
from driftline.storage.codec import reference_id, reference_rows
from driftline.storage.labels import PredictionRow
from driftline.storage.rows import PaneRow
from driftline.storage.store import Store
from driftline.storage.warmup import StagedChunk, WarmupStore, drained_row, staged_row, unpack

log = logging.getLogger("driftline.warmup")
Partition = tuple[str, int]
DEFAULT_WARMUP_EVENTS = 10_000


def _decoded(model: str, raws: Iterable[bytes]) -> list[AnyEvent]:
    out = []
    for raw in raws:
        try:
            out.append(decode(raw, MAX_EVENT_BYTES))
        except InvalidEvent:  # staged after validation: only a newer contract could refuse it
            log.exception("a staged event of %r is no longer valid; left out", model)
    return out


def _events(chunks: Iterable[StagedChunk]) -> list[tuple[tuple[int, str, int, int, int], AnyEvent]]:
    """The staged events, each keyed by (event time, topic, partition, offset order): the order
    every process agrees on, so "the first N" names the same events whoever fits."""
    out = [
        ((e.ts_ms, c.topic, c.partition, c.offset_start, i), e)
        for c in chunks
        for i, e in enumerate(_decoded(c.model_id, c.messages()))
    ]
    out.sort(key=lambda pair: pair[0])
    return out


class Bootstrapper:
    """Fits the references of models that have none, for the consumers of one process."""

    def __init__(
        self,
        store: Store,
        references: Mapping[str, ModelSketch],
        models: ModelRegistry,
        reload: Callable[[], None],
        warmup_events: int = DEFAULT_WARMUP_EVENTS,
        segments: tuple[str, ...] = (),
    ) -> None:
        """``reload``: refresh ``references`` from the store (after a reference was stored)."""
        self.store = store
        self.reload = reload
        self.staging = WarmupStore(store)
        self.references = references
        self.models = models
        self.warmup_events = warmup_events
        self.segments = segments
        self._lock = threading.Lock()
        self._failed: set[str] = set()  # warned about once

    def enabled(self, model: str) -> bool:
        """Does a model without a reference warm up (rather than have its events dead-lettered)?"""
        s = self.models[model]
        return (
            s.warmup_range is not None
            or (s.warmup_events if s.warmup_events is not None else self.warmup_events) > 0
        )

    def needed(self, model: str) -> int:
        s = self.models[model]
        return s.warmup_events if s.warmup_events is not None else self.warmup_events

    def fit_ready(self, group: str, watermark: int | None) -> list[str]:
        """Fit every reference whose warm-up is over; returns the models that got one."""
        with self._lock:
            counts = self.staging.staged_counts(group)
            waiting = [m for m in counts if m not in self.references]
            if not waiting:
                return []
            stored = {r.model_id for m in waiting for r in self.store.references(m)}
            if stored:  # fitted by another process: take it
                self.reload()
            fitted = []
            for model in waiting:
                if model not in stored and self._fit(group, model, counts[model], watermark):
                    fitted.append(model)
            return fitted

    def _fit(self, group: str, model: str, staged: int, watermark: int | None) -> bool:
        settings = self.models[model]
        if settings.warmup_range is not None:
            start, end = settings.warmup_range
            if watermark is None or watermark < end:
                return False
            picked = [e for (ts, *_), e in _events(self.staging.chunks(group, model)) if start <= ts < end]
            source = f"bootstrap: events {format_ts(start)} .. {format_ts(end)}"
            if not picked:
                if model not in self._failed:
                    self._failed.add(model)
                    log.warning("model %r: no event in its warm-up range %s; waiting for %d events",
                                model, source.split(": ")[1], self.needed(model))  # fmt: skip
                if staged < max(1, self.needed(model)):
                    return False
                picked = [e for _, e in _events(self.staging.chunks(group, model))][: self.needed(model)]
                source = f"bootstrap: first {len(picked)} events (none in the warm-up range)"
        else:
            if staged < self.needed(model):
                return False
            ordered = _events(self.staging.chunks(group, model))[: self.needed(model)]
            picked = [e for _, e in ordered]
            first, last = ordered[0][0][0], ordered[-1][0][0]
            source = f"bootstrap: first {len(picked)} events, {format_ts(first)} .. {format_ts(last)}"
        try:
            reference = fit_events_reference(
                picked,
                settings.segments or self.segments,
                settings.positive_threshold,
                settings.positive_class,
                settings.slices,
                source=f"model {model!r} {source}",
            )
        except (TableError, ValueError) as exc:  # e.g. no feature: keep staging, say why once
            if model not in self._failed:
                self._failed.add(model)
                log.error("model %r: cannot fit a reference on its first events: %s", model, exc)
            return False
        self.store.save_reference(reference_rows(model, reference, source=source))
        self.reload()
        prom.REFERENCES_BOOTSTRAPPED.inc()
        log.info("model %r: reference %s fitted (%s)", model, reference_id(reference.binning), source)
        return True


@dataclass
class Drain:
    """What folding a partition's staged events adds to its next flush."""

    rows: list[PaneRow]
    panes: list[PaneKey]
    predictions: list[PredictionRow]
    models: set[str]


class Staging:
    """One consumer's staged events: staged rows for the next flush, and which of its partitions
    hold staged events still to fold."""

    def __init__(
        self,
        store: Store,
        group: str,
        references: Mapping[str, ModelSketch],
        spec: WindowSpec,
        models: ModelRegistry,
        keep_predictions_ms: int | None = None,
    ) -> None:
        self.store = WarmupStore(store)
        self.group = group
        self.references = references
        self.spec = spec
        self.models = models
        self.keep_predictions_ms = keep_predictions_ms
        self.pending: dict[Partition, set[str]] = defaultdict(set)  # stored and not folded
        self.unstored: dict[Partition, list[PaneRow]] = defaultdict(list)  # staged by the next flush

    def load(self, topic: str, partitions: Iterable[int]) -> None:
        """On assignment: which of these partitions have staged events of earlier owners."""
        pending = self.store.pending(self.group, topic)
        for p in partitions:
            if pending.get(p):
                self.pending[(topic, p)] |= pending[p]

    def stage(
        self, key: Partition, model: str, ts: np.ndarray, offsets: np.ndarray, values: list[bytes]
    ) -> None:
        self.unstored[key].append(
            staged_row(model, int(ts.min()), (int(offsets[0]), int(offsets[-1])), values)
        )

    def take(self, key: Partition) -> list[PaneRow]:
        """The staged rows for this partition's flush, now being written."""
        rows = self.unstored.pop(key, [])
        self.pending[key] |= {r.model_id for r in rows}
        return rows

    def drainable(self) -> list[Partition]:
        """Partitions with staged events (stored or not) of models that now have a reference."""
        return sorted(
            key
            for key in {*self.pending, *self.unstored}
            if any(m in self.references for m in self.pending.get(key, ()))
            or any(r.model_id in self.references for r in self.unstored.get(key, ()))
        )

    def drain(self, key: Partition) -> Drain:
        """Fold the partition's staged events of models with a reference (those stored, with a
        marker each, and those not stored yet, which then are never staged)."""
        ready = {m for m in self.pending.get(key, ()) if m in self.references}
        unstored = self.unstored.get(key, [])
        ready |= {r.model_id for r in unstored if r.model_id in self.references}
        kept = [r for r in unstored if r.model_id not in ready]
        if kept:
            self.unstored[key] = kept
        else:
            self.unstored.pop(key, None)
        folder = PaneFolder(self.references, self.spec, self.models)  # no watermark: never late
        markers: list[PaneRow] = []
        events: list[AnyEvent] = []
        for model in sorted(ready):
            chunks = self.store.chunks(self.group, model, *key)
            markers += [drained_row(c, reference_id(self.references[model].binning)) for c in chunks]
            raws = [raw for c in chunks for raw in c.messages()]
            raws += [raw for r in unstored if r.model_id == model for raw in unpack(r.sketch)]
            events += _decoded(model, raws)
        if events:
            folder.fold(events, key)
        rows, panes = folder.take_rows(key)
        predictions = (
            event_prediction_rows(events, self.references, self.spec.pane_ms)
            if self.keep_predictions_ms
            else []
        )
        return Drain(rows + markers, panes, predictions, ready)

    def drained(self, key: Partition, models: set[str]) -> None:
        """The drain's flush was stored."""
        left = self.pending.get(key, set()) - models
        if left:
            self.pending[key] = left
        else:
            self.pending.pop(key, None)

    def forget(self, keys: Iterable[Partition], stored: bool = True) -> None:
        for key in keys:
            self.unstored.pop(key, None)
            if stored:
                self.pending.pop(key, None)

    def waiting(self) -> set[str]:
        return {m for ms in self.pending.values() for m in ms if m not in self.references}
