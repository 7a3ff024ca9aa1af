"""Event-time panes, windows and watermarks as pure functions and small state objects.

A pane is a tumbling interval of event time ``[start, start + pane_ms)``; a window is the merge
of the panes it covers. The watermark of a partition is its largest event time minus the
allowed lateness; a pane is final once the smallest watermark over the active partitions has
passed its end. An event whose pane is already final is *late*: it is kept, in a correction
sketch for that pane, never dropped.

    >>> pane_start(125_000, 60_000)
    120000
    >>> w = Watermark(lateness_ms=5_000)
    >>> w.observe(partition=0, max_event_ms=130_000)
    >>> w.current(), is_final(60_000, 60_000, w.current())
    (125000, True)
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


def pane_start(ts_ms: int, pane_ms: int) -> int:
    return ts_ms - ts_ms % pane_ms


def pane_starts(ts_ms: npt.ArrayLike, pane_ms: int) -> np.ndarray:
    ts = np.asarray(ts_ms, dtype=np.int64)
    return ts - ts % pane_ms


def window_panes(start_ms: int, end_ms: int, pane_ms: int) -> range:
    """Starts of the panes whose intervals lie in ``[start_ms, end_ms)``, aligned to panes."""
    first = -(-start_ms // pane_ms) * pane_ms  # round up: a partial pane is not in the window
    return range(first, end_ms - pane_ms + 1, pane_ms)


def sliding_windows(pane: int, pane_ms: int, window_ms: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` of every window (sliding by one pane) that contains the pane."""
    k = window_ms // pane_ms
    return [(pane - i * pane_ms, pane - i * pane_ms + window_ms) for i in range(k)]


def is_final(pane_start_ms: int, pane_ms: int, watermark_ms: int | None) -> bool:
    return watermark_ms is not None and pane_start_ms + pane_ms <= watermark_ms


def late_mask(ts_ms: npt.ArrayLike, pane_ms: int, watermark_ms: int | np.ndarray | None) -> np.ndarray:
    """True for events whose pane was already final when they arrived (per-event marks allowed)."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    if watermark_ms is None:
        return np.zeros(ts.shape, bool)
    return pane_starts(ts, pane_ms) + pane_ms <= watermark_ms


@dataclass
class Watermark:
    """Min over partitions of (max event time − lateness), ignoring idle partitions.

    Whether a partition is idle is a fact the caller establishes (the Kafka source: read to the
    broker's high watermark and nothing arrived for the idle time *while polling*); this object
    never looks at a clock, so a stalled process cannot make partitions "idle". An assigned
    partition that has not delivered yet holds the watermark back until it delivers or is idle.
    The value never moves backwards: panes already declared final stay final.
    """

    lateness_ms: int
    _max_event: dict[Hashable, int] = field(default_factory=dict)
    _assigned: set[Hashable] = field(default_factory=set)
    _idle: set[Hashable] = field(default_factory=set)
    _emitted: int | None = None

    def assign(self, partition: Hashable, max_event_ms: int | None = None) -> None:
        """``max_event_ms``: what an earlier owner stored for the partition (a restart resumes there)."""
        self._assigned.add(partition)
        if max_event_ms is not None:
            self._max_event[partition] = max(self._max_event.get(partition, max_event_ms), max_event_ms)

    def observe(self, partition: Hashable, max_event_ms: int) -> None:
        self._assigned.add(partition)
        self._idle.discard(partition)
        self._max_event[partition] = max(self._max_event.get(partition, max_event_ms), max_event_ms)

    def set_idle(self, partition: Hashable, idle: bool) -> None:
        if idle:
            self._idle.add(partition)
        else:
            self._idle.discard(partition)

    def forget(self, partition: Hashable) -> None:
        """A partition revoked from this consumer no longer holds the watermark."""
        self._assigned.discard(partition)
        self._idle.discard(partition)
        self._max_event.pop(partition, None)

    def max_event(self, partition: Hashable) -> int | None:
        return self._max_event.get(partition)

    def marks(self, partition: Hashable, ts_ms: np.ndarray) -> np.ndarray:
        """The watermark each event of an in-order batch from ``partition`` meets on arrival.

        Events of one batch are judged one after another: event j sees the partition's max event
        time over the events before it, so an old event behind newer ones in the same batch is
        late exactly as it would be had it arrived alone.
        """
        base = self.current()
        floor = np.iinfo(np.int64).min
        others = [p for p in self._assigned if p != partition and p not in self._idle]
        if any(p not in self._max_event for p in others):
            limit = floor  # a silent partition holds the watermark back
        else:
            limit = min((self._max_event[p] for p in others), default=np.iinfo(np.int64).max)
        before = np.empty(len(ts_ms), np.int64)
        if len(ts_ms):
            before[0] = self._max_event.get(partition, floor)
            before[1:] = np.maximum.accumulate(np.maximum(ts_ms[:-1], before[0]))
        capped = np.minimum(before, limit)
        # "no watermark yet" stays at the floor (subtracting the lateness there would wrap around)
        advanced = np.where(capped == floor, floor, capped - self.lateness_ms)
        return np.maximum(advanced, floor if base is None else base)

    def current(self) -> int | None:
        active = [p for p in self._assigned if p not in self._idle]
        if any(p not in self._max_event for p in active):
            return self._emitted  # an assigned partition has not spoken yet: it may be far behind
        active_max = [self._max_event[p] for p in active]
        # All idle: nothing more is arriving, so let every pane seen so far close.
        candidates = active_max or ([max(self._max_event.values())] if self._max_event else [])
        if not candidates:
            return self._emitted
        value = min(candidates) - self.lateness_ms
        if self._emitted is None or value > self._emitted:
            self._emitted = value
        return self._emitted


class ReferenceKindError(ValueError):
    """A rolling reference that cannot be had: unknown kind, or no range to roll from."""


def rolling_range(against: str, start: int | None, end: int | None) -> tuple[int, int]:
    """The range a rolling reference merges, for a report over ``[start, end)``:
    ``previous`` (the range of the same length just before), ``trailing:D`` (the D before the
    start) or ``seasonal:P`` (the same range P earlier); D and P as ``7d``, ``24h``, ``30m``."""
    if start is None or end is None:
        raise ReferenceKindError("a rolling reference needs the report's from and to")
    kind, _, span = against.partition(":")
    if kind == "previous" and not span:
        return start - (end - start), start
    if kind in ("trailing", "seasonal") and span:
        units = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
        if span[:-1].isdigit() and span[-1] in units and int(span[:-1]) > 0:
            ms = int(span[:-1]) * units[span[-1]]
            return (start - ms, start) if kind == "trailing" else (start - ms, end - ms)
    raise ReferenceKindError(f"{against!r}: expected previous, trailing:7d or seasonal:1w (m, h, d, w)")


def checked_against(against: str | None) -> str | None:
    """``against`` as a setting or registration accepts it (a ValueError names what is expected)."""
    if against is not None:
        try:
            rolling_range(against, 0, 1)
        except ReferenceKindError as exc:
            raise ValueError(str(exc)) from None
    return against
