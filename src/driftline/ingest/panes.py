"""Folding valid events into per-(model, version, pane) sketches, with watermarks and lateness.

No Kafka and no ClickHouse here: the consumer (and the HTTP ingest path) feed events in and
take rows out. State between two flushes is bounded by the panes touched in that interval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from driftline.contract import Event
from driftline.detectors.profile import ModelSketch
import numpy as np

from driftline.detectors.windows import Watermark, is_final, late_mask, pane_starts
from driftline.ingest.decode import AnyEvent, to_batch
from driftline.storage.codec import pane_rows
from driftline.storage.store import PaneRow


@dataclass(frozen=True)
class WindowSpec:
    pane_ms: int = 60_000
    window_ms: int = 3_600_000
    lateness_ms: int = 300_000
    idle_ms: int = 30_000
    positive_threshold: float = 0.5
    positive_class: str = "1"


PaneKey = tuple[str, str, int, bool]  # model, version, pane start, late


@dataclass
class PaneFolder:
    references: Mapping[str, ModelSketch]
    spec: WindowSpec = field(default_factory=WindowSpec)

    def __post_init__(self) -> None:
        self.watermark = Watermark(self.spec.lateness_ms, self.spec.idle_ms)
        self.state: dict[PaneKey, ModelSketch] = {}
        self.open_panes: set[tuple[str, str, int]] = set()
        self.late_events = 0
        self.pending_events = 0

    def fold(self, events: Sequence[AnyEvent], partition: Hashable, now_ms: int) -> None:
        """Fold one partition's events; late ones (pane already final) go to correction sketches."""
        if not events:
            return
        ts = np.fromiter((e.ts_ms for e in events), np.int64, len(events))
        late_rows = late_mask(ts, self.spec.pane_ms, self.watermark.marks(partition, ts, now_ms))
        starts = pane_starts(ts, self.spec.pane_ms)
        groups: dict[PaneKey, list[AnyEvent]] = defaultdict(list)
        for e, start, is_late in zip(events, starts.tolist(), late_rows.tolist(), strict=True):
            groups[(e.model_id, e.model_version, start, is_late)].append(e)
        for key, evs in groups.items():
            model, version, start, late = key
            reference = self.references[model]
            batch = to_batch(evs, reference.binning, self.spec.positive_threshold, self.spec.positive_class)
            sketch = self.state.get(key)
            if sketch is None:
                sketch = self.state[key] = ModelSketch(reference.binning)
            sketch.update(batch)
            if late:
                self.late_events += len(evs)
            else:
                self.open_panes.add((model, version, start))
        self.pending_events += len(events)
        self.watermark.observe(partition, int(ts.max()), now_ms)

    def take_rows(self) -> list[PaneRow]:
        """Rows for everything folded since the last call; the state is cleared."""
        rows = [
            row
            for (model, version, start, late), sketch in sorted(self.state.items())
            for row in pane_rows(model, version, start, self.spec.pane_ms, late, sketch)
        ]
        self.state.clear()
        self.pending_events = 0
        return rows

    def closed_panes(self, now_ms: int) -> list[tuple[str, str, int]]:
        """Panes that became final since the last call (their windows can be evaluated)."""
        mark = self.watermark.current(now_ms)
        closed = sorted(p for p in self.open_panes if is_final(p[2], self.spec.pane_ms, mark))
        self.open_panes.difference_update(closed)
        return closed

    def close_all(self) -> list[tuple[str, str, int]]:
        """Every pane still open (the end of a replay: no later events will come)."""
        panes = sorted(self.open_panes)
        self.open_panes.clear()
        return panes

    def forget_partitions(self, partitions: Iterable[Hashable]) -> None:
        for p in partitions:
            self.watermark.forget(p)

    def discard(self) -> None:
        """Drop unflushed state (partitions lost: another consumer re-reads those offsets)."""
        self.state.clear()
        self.pending_events = 0
