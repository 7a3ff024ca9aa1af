"""Folding valid events into per-(partition, model, version, pane) sketches, with watermarks.

No Kafka and no ClickHouse here: the consumer (and the HTTP ingest path) feed events in and
take rows out. State is kept per source partition because each partition's flush is its own
fenced insert; between two flushes it is bounded by the panes touched in that interval. Events
whose pane the watermark already passed are *late*: they go to correction sketches, never lost.
Each model's events are folded with its registered settings (positive threshold or class,
segments); segment entries that are not folded as sent are counted in
``driftline_segment_overflow_total``.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from driftline import telemetry as prom
from driftline.detectors.fairness import OVERFLOW_ATTRIBUTE
from driftline.detectors.profile import Batch, Binning, ModelRegistry, ModelSketch
from driftline.detectors.slice_ids import parse_slice_id, slice_id
from driftline.detectors.slices import Slicer, batch_columns
from driftline.detectors.windows import Watermark, late_mask, pane_starts
from driftline.ingest.decode import AnyEvent, to_batch
from driftline.ingest.scan import OK, ScannedBatch
from driftline.storage.codec import pane_rows
from driftline.storage.rows import PaneRow

log = logging.getLogger("driftline.ingest")


@dataclass(frozen=True)
class WindowSpec:
    pane_ms: int = 60_000
    window_ms: int = 3_600_000
    lateness_ms: int = 300_000
    idle_ms: int = 30_000


PaneKey = tuple[str, str, int, bool]  # model, version, pane start, late


@dataclass
class PaneFolder:
    references: Mapping[str, ModelSketch]
    spec: WindowSpec = field(default_factory=WindowSpec)
    models: ModelRegistry = field(default_factory=ModelRegistry)

    def __post_init__(self) -> None:
        self._unfolded: set[str] = set()  # models warned about: their events' segments fold nowhere
        self.watermark = Watermark(self.spec.lateness_ms)
        self.state: dict[Hashable, dict[PaneKey, ModelSketch]] = defaultdict(dict)
        self.late_events = 0
        self.pending_events = 0

    def fold(self, events: Sequence[AnyEvent], partition: Hashable) -> None:
        """Fold one partition's events, in the order they were read."""
        if not events:
            return
        ts = np.fromiter((e.ts_ms for e in events), np.int64, len(events))
        starts, late = self._judge(partition, ts)
        groups: dict[PaneKey, list[AnyEvent]] = defaultdict(list)
        for e, start, is_late in zip(events, starts.tolist(), late.tolist(), strict=True):
            groups[(e.model_id, e.model_version, start, is_late)].append(e)
        for key, evs in groups.items():
            self._fold(partition, key, self._to_batch(key[0], evs))
        self._count(partition, ts, late)

    def fold_scanned(
        self, partition: Hashable, scanned: ScannedBatch, rows: np.ndarray, decoded: Mapping[int, AnyEvent]
    ) -> None:
        """Fold the messages ``rows`` of a scanned batch (one partition's, in offset order); those
        the scanner left to the contract parser are in ``decoded`` by row, their time and model
        already written into ``scanned``'s columns."""
        if not len(rows):
            return
        ts = scanned.ts_ms[rows]
        starts, late = self._judge(partition, ts)
        # One int64 key per row: (model, version, pane, late); a stable sort groups the rows and
        # keeps each group in offset order.
        first = int(starts.min())
        panes = (starts - first) // self.spec.pane_ms
        n_strings, n_panes = len(scanned.strings), int(panes.max()) + 1
        model_version = scanned.model[rows].astype(np.int64) * n_strings + scanned.version[rows]
        key = (model_version * n_panes + panes) * 2 + late
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        bounds = np.flatnonzero(np.diff(ordered)) + 1
        for group_order in np.split(order, bounds):
            k = int(key[group_order[0]])
            k, is_late = divmod(k, 2)
            k, pane = divmod(k, n_panes)
            model_id, version_id = divmod(k, n_strings)
            pane_key = (scanned.strings[model_id], scanned.strings[version_id],
                        first + pane * self.spec.pane_ms, bool(is_late))  # fmt: skip
            group = rows[group_order]
            fast = group[scanned.status[group] == OK]
            if len(fast):
                batch = self._counted(pane_key[0], scanned.batch(fast, *self._shape(pane_key[0])))
                self._fold(partition, pane_key, batch)
            if len(fast) < len(group):  # read by the contract's decoder
                slow = [decoded[i] for i in group[scanned.status[group] != OK].tolist()]
                self._fold(partition, pane_key, self._to_batch(pane_key[0], slow))
        self._count(partition, ts, late)

    def _judge(self, partition: Hashable, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pane_starts(ts, self.spec.pane_ms), late_mask(
            ts, self.spec.pane_ms, self.watermark.marks(partition, ts)
        )

    def _fold(self, partition: Hashable, key: PaneKey, batch: Batch) -> None:
        """Into the pane's sketch and, for a model watched by slices, each slice's pane sketch
        (a slice is folded only when its reference has it: build the reference with the slices)."""
        self._sketch(partition, key).update(batch)
        model = key[0]
        by = self.models[model].slices
        if not by:
            return
        slicer = _slicer(self.references[model].binning, by)
        for attr, by_value in slicer.rows(batch_columns(batch, list(slicer.values))).items():
            for value, rows in by_value.items():
                sid = slice_id(model, attr, value)
                if len(rows) and sid in self.references:
                    self._sketch(partition, (sid, *key[1:])).update(batch.select(rows))  # type: ignore[arg-type]

    def _sketch(self, partition: Hashable, key: PaneKey) -> ModelSketch:
        panes = self.state[partition]
        sketch = panes.get(key)
        if sketch is None:
            sketch = panes[key] = ModelSketch(self.references[key[0]].binning)
        return sketch

    def _to_batch(self, model: str, events: Sequence[AnyEvent]) -> Batch:
        return self._counted(model, to_batch(events, *self._shape(model)))

    def _shape(self, model: str) -> tuple[Binning, float, str, dict[str, frozenset[str]]]:
        """How the model's events become a batch: its reference binning, its registered outcome
        rule and segment plan (read at every fold: a registration applies at once)."""
        binning, settings = self.references[model].binning, self.models[model]
        plan = self.models.segment_plan(model, binning)
        return binning, settings.positive_threshold, settings.positive_class, plan

    def _counted(self, model: str, batch: Batch) -> Batch:
        for reason, n in batch.segment_overflow.items():
            prom.SEGMENT_OVERFLOW.labels(reason).inc(n)
        if (
            not batch.segments
            and OVERFLOW_ATTRIBUTE in batch.segment_overflow
            and model not in self._unfolded
        ):
            self._unfolded.add(model)  # e.g. a reference built without --segments, or before they were kept
            log.warning(
                "model %r: no segment attribute of its events is folded (its reference has values of: %s; "
                "registered: %s); build its reference with the segment columns",
                model,
                ", ".join(sorted(self.references[model].binning.segments)) or "none",
                ", ".join(self.models[model].segments) or "none",
            )
        return batch

    def _count(self, partition: Hashable, ts: np.ndarray, late: np.ndarray) -> None:
        self.late_events += int(late.sum())
        self.pending_events += len(ts)
        self.watermark.observe(partition, int(ts.max()))

    def take_rows(self, partition: Hashable) -> tuple[list[PaneRow], list[PaneKey]]:
        """Rows for everything folded from ``partition`` since the last call, and which panes they
        touch; that state is cleared."""
        panes = self.state.pop(partition, {})
        rows = [
            row
            for (model, version, start, late), sketch in sorted(panes.items())
            for row in pane_rows(model, version, start, self.spec.pane_ms, late, sketch)
        ]
        self.pending_events -= _events(panes)
        return rows, sorted(panes)

    def partitions(self) -> list[Hashable]:
        return [p for p, panes in self.state.items() if panes]

    def forget_partitions(self, partitions: Iterable[Hashable]) -> None:
        for p in partitions:
            self.watermark.forget(p)
            self.discard(p)

    def discard(self, partition: Hashable | None = None) -> None:
        """Drop unflushed state (partitions lost: another consumer re-reads those offsets)."""
        if partition is None:
            self.state.clear()
            self.pending_events = 0
        else:
            panes = self.state.pop(partition, {})
            self.pending_events -= _events(panes)


@functools.lru_cache(maxsize=256)  # per reference binning and slice attributes, not per batch
def _slicer(binning: Binning, by: tuple[str, ...]) -> Slicer:
    return Slicer.of(binning, by)


def _events(panes: Mapping[PaneKey, ModelSketch]) -> int:
    """Events in these panes, each once (a slice's pane holds events of its model's too)."""
    return sum(s.n_events for (model, *_), s in panes.items() if parse_slice_id(model) is None)
