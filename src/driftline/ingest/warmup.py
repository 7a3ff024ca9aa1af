"""Bootstrap references: a model seen without one is watched from its own first events.

Until its reference exists, a model's events are *staged*: packed into the flush of their partition
(or the insert of their HTTP request) and stored with it (``storage/warmup.py``), so a crash during
the warm-up loses and repeats nothing. :class:`Bootstrapper` (one per process and source) fits the
reference once the model has ``warmup_events`` staged events (the first N by event time) or, with a
``warmup_range``, once event time passed its end (the events of that range), and stores it as a new
reference version. Then it folds every staged row of a model that has a reference, each in its own
insert named by the row (a retry, a restart or another process folding the same row is stored
once). Staged rows of a model given a reference by hand (``reference build``) are folded the same.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from driftline import telemetry as prom
from driftline.contract import MAX_EVENT_BYTES, InvalidEvent, format_ts
from driftline.detectors.defaults import DEFAULT_MIN_SUPPORT
from driftline.detectors.profile import ModelRegistry, ModelSketch
from driftline.ingest.decode import AnyEvent, decode
from driftline.ingest.files import TableError, fit_events_reference
from driftline.ingest.labels import event_prediction_rows
from driftline.ingest.panes import PaneFolder, PaneKey, WindowSpec
from driftline.storage.codec import reference_id, reference_rows
from driftline.storage.errors import StoreError
from driftline.storage.labels import LabelStore
from driftline.storage.rows import PaneRow
from driftline.storage.store import Store
from driftline.storage.warmup import StagedChunk, WarmupStore, drain_token, drained_row, staged_row

log = logging.getLogger("driftline.warmup")
Partition = tuple[str, int]
DEFAULT_WARMUP_EVENTS = 10_000
DEFAULT_MAX_MODELS = 1_000


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
    """Fits the references of models that have none and folds their staged events, for the
    consumers (or the pushed ingest) of one process."""

    def __init__(
        self,
        store: Store,
        references: Mapping[str, ModelSketch],
        models: ModelRegistry,
        reload: Callable[[], None],
        warmup_events: int = DEFAULT_WARMUP_EVENTS,
        segments: tuple[str, ...] = (),
        spec: WindowSpec | None = None,
        keep_predictions_ms: int | None = None,
        max_models: int = DEFAULT_MAX_MODELS,
    ) -> None:
        """``reload``: refresh ``references`` from the store (after a reference was stored);
        ``spec``: the panes staged events are folded into; ``keep_predictions_ms``: labels are
        joined later, keep the folded events' predictions this long; ``max_models``: models that
        warm up at once (the events of one more are dead-lettered: a producer sending random model
        ids must not fill the store)."""
        self.store = store
        self.staging = WarmupStore(store)
        self.references = references
        self.models = models
        self.reload = reload
        self.warmup_events = warmup_events
        self.segments = segments
        self.spec = spec or WindowSpec()
        self.keep_predictions_ms = keep_predictions_ms
        self._lock = threading.Lock()
        # per group: how many times rows were staged, and that count when none was left to fold
        # (step() is a no-op until more are staged; nothing checked yet: one look at the store)
        self._stamps: dict[str, int] = defaultdict(int)
        self._clean: dict[str, int] = {}
        self._failed: dict[str, int] = {}  # model -> staged events when its fit failed (retry at 2x)
        self.max_models = max_models
        self._warming: set[str] = set()  # models warming up (staged, no reference yet)
        self._warned: set[str] = set()

    def enabled(self, model: str) -> bool:
        """Does a model without a reference warm up (rather than have its events dead-lettered)?"""
        return self.models[model].warmup_range is not None or self.needed(model) > 0

    def refusal(self, model: str) -> str | None:
        """Why an event of a model without a reference is dead-lettered rather than staged (None:
        it is staged)."""
        if not self.enabled(model):
            return f"no reference registered for model {model!r}"
        if model not in self._warming:
            if len(self._warming) >= self.max_models:
                return (f"no reference registered for model {model!r}, and {self.max_models} models are "
                        "already warming up (warmup_max_models)")  # fmt: skip
            self._warming.add(model)
        return None

    def needed(self, model: str) -> int:
        s = self.models[model]
        return s.warmup_events if s.warmup_events is not None else self.warmup_events

    def staged(self, group: str) -> None:
        """Rows of ``group`` were stored staged: :meth:`step` has work."""
        self._stamps[group] += 1

    def step(self, group: str, watermark: int | None) -> list[PaneKey]:
        """Fit every reference whose warm-up is over, then fold the staged rows of models that have
        a reference; returns the panes written (for window evaluation). Cheap when nothing of
        ``group`` is staged (checked once, then only after :meth:`staged`)."""
        with self._lock:
            stamp = self._stamps[group]
            if self._clean.get(group) == stamp:
                return []
            counts = self.staging.staged_counts(group)
            self._warming = {m for m in {*self._warming, *counts} if m not in self.references}
            if not counts:
                self._clean[group] = stamp
                return []
            waiting = [m for m in counts if m not in self.references]
            if waiting and any(self.store.references(m) for m in waiting):
                self.reload()  # fitted (or built) elsewhere: take it
            for model in [m for m in waiting if m not in self.references]:
                self._fit(group, model, counts[model], watermark)
            panes: list[PaneKey] = []
            for model in [m for m in counts if m in self.references]:
                panes += self._drain(group, model)
            return panes

    def _fit(self, group: str, model: str, staged: int, watermark: int | None) -> None:
        settings, needed = self.models[model], self.needed(model)
        if staged < 2 * self._failed.get(model, 0):
            return  # its last fit failed: try again with more events
        if settings.warmup_range is not None:
            start, end = settings.warmup_range
            if watermark is None or watermark < end:
                return
            picked = [e for (ts, *_), e in _events(self.staging.chunks(group, model)) if start <= ts < end]
            source = f"bootstrap: events {format_ts(start)} .. {format_ts(end)}"
            if len(picked) < DEFAULT_MIN_SUPPORT:  # too few to fit on: fall back to the first N
                self._warn(model, f"{len(picked)} events in its warm-up range; fitting on its first events")
                if needed <= 0 or staged < needed:
                    return
                picked = [e for _, e in _events(self.staging.chunks(group, model))][:needed]
                source = f"bootstrap: first {len(picked)} events (too few in the warm-up range)"
        else:
            if needed <= 0 or staged < needed:
                return
            ordered = _events(self.staging.chunks(group, model))[:needed]
            if len(ordered) < needed:
                return
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
        except (TableError, ValueError) as exc:  # keep staging; say why, retry with more events
            self._failed[model] = staged
            log.error("model %r: cannot fit a reference on its first events: %s", model, exc)
            return
        self.store.save_reference(reference_rows(model, reference, source=source))
        self.reload()
        prom.REFERENCES_BOOTSTRAPPED.inc()
        log.info("model %r: reference %s fitted (%s)", model, reference_id(reference.binning), source)

    def _drain(self, group: str, model: str) -> list[PaneKey]:
        """Each staged row of the model: its panes and its marker in one insert named by it."""
        ref_id = reference_id(self.references[model].binning)
        panes: list[PaneKey] = []
        for chunk in self.staging.chunks(group, model):
            events = _decoded(model, chunk.messages())
            folder = PaneFolder(self.references, self.spec, self.models)  # no watermark: never late
            folder.fold(events, "staged")
            rows, keys = folder.take_rows("staged")
            if self.keep_predictions_ms:  # before the panes: a prediction joins only if counted
                kept = event_prediction_rows(events, self.references, self.spec.pane_ms)
                LabelStore(self.store).write_predictions(kept, self.keep_predictions_ms)
            rows.append(drained_row(chunk, ref_id))
            self.store.write_flush(group, rows, None, token=drain_token(group, chunk, ref_id))
            panes += keys
        return panes

    def _warn(self, model: str, message: str) -> None:
        if model not in self._warned:
            self._warned.add(model)
            log.warning("model %r: %s", model, message)


class Staging:
    """One consumer's staged events not stored yet, per partition: rows for its next flush."""

    def __init__(self) -> None:
        self.unstored: dict[Partition, list[PaneRow]] = defaultdict(list)

    def stage(
        self, key: Partition, model: str, ts: np.ndarray, offsets: np.ndarray, values: list[bytes]
    ) -> None:
        first_last = (int(offsets[0]), int(offsets[-1]))
        self.unstored[key].append(staged_row(model, int(ts.min()), first_last, values))

    def take(self, key: Partition) -> list[PaneRow]:
        """The staged rows for this partition's flush, now being written."""
        return self.unstored.pop(key, [])

    def forget(self, keys: Iterable[Partition]) -> None:
        """Not stored: whoever reads these partitions next stages them again."""
        for key in keys:
            self.unstored.pop(key, None)


def warm_up(bootstrapper: Bootstrapper, group: str, watermark: int | None) -> list[PaneKey]:
    """:meth:`Bootstrapper.step` for a caller that must go on whatever happens (a consumer, the
    ticker): a store failure or a bad fit is logged, the staged events stay for the next call."""
    try:
        return bootstrapper.step(group, watermark)
    except StoreError as exc:
        log.warning("warm-up deferred: %s", exc)
    except Exception:
        log.exception("warm-up failed; the staged events stay")
    return []
