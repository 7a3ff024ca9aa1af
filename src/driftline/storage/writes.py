"""Writes: pane flushes fenced by their Kafka offsets, references, window metrics.

Every write is idempotent: a flush carries a deterministic ``insert_deduplication_token``, and
its rows include the Kafka offsets they cover, so a consumer that restarts resumes after the
last flush ClickHouse acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from driftline.storage.connection import Connection
from driftline.storage.errors import Superseded
from driftline.storage.rows import (
    METRIC_COLUMNS,
    PANE_COLUMNS,
    REFERENCE_COLUMNS,
    MetricRow,
    OffsetRange,
    PaneRow,
    ReferenceRow,
    flush_token,
)


class Writes(Connection):
    def write_flush(
        self, group: str, rows: Sequence[PaneRow], offsets: OffsetRange | None, token: str | None = None
    ) -> str:
        """Pane rows and the partition offsets they cover, in ONE insert (one part: all or nothing).

        With ``offsets``, the write is fenced: it raises :class:`Superseded` when those offsets
        are (or, after the insert, turn out to be) stored by another flush. Check, insert and
        verify hold the store's lock (exact between members of one process); across processes the
        token, which names the flush by its first offset, lets ClickHouse keep one of two racing
        flushes, and the verification tells the loser.
        """
        token = token or flush_token(group, offsets, rows)
        now = datetime.now(UTC)
        data: list[list[Any]] = [
            [
                r.kind,
                r.model_id,
                r.model_version,
                r.feature,
                r.pane_start,
                r.pane_ms,
                int(r.late),
                r.n,
                r.sketch,
                r.reference_id,
                group,
                *_source(r, offsets),
                r.offset_start,
                r.offset_end,
                token,
                now,
            ]
            for r in rows
        ]
        if offsets is None:
            if data:
                self._insert("pane_sketches", data, PANE_COLUMNS, {"insert_deduplication_token": token})
            return token
        o = offsets
        data.append(
            [
                "offset",
                "",
                "",
                "",
                o.max_event_ms,
                0,
                0,
                o.end - o.start + 1,
                b"",
                "",
                group,
                o.topic,
                o.partition,
                o.start,
                o.end,
                token,
                now,
            ]
        )
        with self._lock:
            before = self._stored_offsets(group, o.topic).get(o.partition)
            if before is not None and before[0] >= o.start:
                raise Superseded(f"{o.topic}[{o.partition}] is stored up to offset {before[0]}")
            self._insert_locked("pane_sketches", data, PANE_COLUMNS, {"insert_deduplication_token": token})
            after = self._stored_offsets(group, o.topic).get(o.partition)
        if after is None or after[0] != o.end:
            raise Superseded(
                f"{o.topic}[{o.partition}]: another flush from offset {o.start} was stored first"
            )
        return token

    def stored_offsets(self, group: str, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: the last offset a flush of this group stored, and the newest event time."""
        with self._lock:
            return self._stored_offsets(group, topic)

    def _stored_offsets(self, group: str, topic: str) -> dict[int, tuple[int, int]]:
        rows = self._query_locked(  # answered from the latest_offsets projection
            f"SELECT source_partition, max(offset_end), max(pane_start) FROM {self.database}.pane_sketches "
            "WHERE kind = 'offset' AND consumer_group = %(g)s AND source_topic = %(t)s "
            "GROUP BY source_partition",
            {"g": group, "t": topic},
        )
        return {int(p): (int(o), int(e)) for p, o, e in rows}

    def save_reference(self, rows: Sequence[ReferenceRow]) -> None:
        """The newest reference of each model in ``rows``, and an entry in their history."""
        now = datetime.now(UTC)
        data = [
            [r.model_id, r.feature, r.kind, r.bins, r.sketch, r.n, r.reference_id, r.source, now]
            for r in rows
        ]
        self._insert("references", data, REFERENCE_COLUMNS)
        history = [
            [r.model_id, r.reference_id, r.feature, r.kind, r.bins, r.sketch, r.n, r.source, now]
            for r in rows
        ]
        cols = ("model_id", "reference_id", "feature", "kind", "bins", "sketch", "n", "source", "created_at")
        self._insert("reference_history", history, cols)
        versions: dict[str, list[Any]] = {}
        for r in rows:
            v = versions.setdefault(r.model_id, [r.model_id, r.reference_id, r.source, 0, 0, now])
            if r.kind == "latency":  # it carries the reference's event count
                v[3] = r.n
            elif r.kind in ("numeric", "categorical"):
                v[4] += 1
        cols = ("model_id", "reference_id", "source", "events", "features", "created_at")
        self._insert("reference_versions", list(versions.values()), cols)

    def write_metrics(self, rows: Sequence[MetricRow], computed_at: datetime | None = None) -> None:
        """``computed_at``: when the panes they were computed from were read (a window whose
        panes changed after that is evaluated again)."""
        now = computed_at or datetime.now(UTC)
        data = [
            [
                r.model_id,
                r.model_version,
                r.feature,
                r.window_start,
                r.window_end,
                r.metric,
                r.value,
                r.p_value,
                r.n_ref,
                r.n_cur,
                r.status,
                now,
            ]
            for r in rows
        ]
        if data:
            self._insert("drift_metrics", data, METRIC_COLUMNS)


def _source(row: PaneRow, offsets: OffsetRange | None) -> tuple[str, int]:
    """The partition a bootstrap row names (staged rows: that of their flush); none for sketches."""
    if row.source is not None:
        return row.source
    if offsets is None or row.offset_start < 0:
        return "", -1
    return offsets.topic, offsets.partition
