"""The rows driftline stores, as the tables' columns name them (the codec turns sketches into them)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PANE_COLUMNS = (
    "kind",
    "model_id",
    "model_version",
    "feature",
    "pane_start",
    "pane_ms",
    "late",
    "n",
    "sketch",
    "reference_id",
    "consumer_group",
    "source_topic",
    "source_partition",
    "offset_start",
    "offset_end",
    "flush_id",
    "inserted_at",
)
METRIC_COLUMNS = (
    "model_id",
    "model_version",
    "feature",
    "window_start",
    "window_end",
    "metric",
    "value",
    "p_value",
    "n_ref",
    "n_cur",
    "status",
    "computed_at",
)
REFERENCE_COLUMNS = (
    "model_id",
    "feature",
    "kind",
    "bins",
    "sketch",
    "n",
    "reference_id",
    "source",
    "created_at",
)


@dataclass(frozen=True)
class PaneRow:
    kind: str
    model_id: str
    model_version: str
    feature: str
    pane_start: int
    pane_ms: int
    late: bool
    n: int
    sketch: bytes
    reference_id: str
    # the Kafka offsets a bootstrap row (staged events, or a marker that they were folded) covers,
    # in ``source`` (topic, partition; None: the partition of the flush that writes it)
    offset_start: int = -1
    offset_end: int = -1
    source: tuple[str, int] | None = None


# Rows that are not sketches: a flush's offsets, events staged until their model has a reference,
# and the markers that staged events were folded (``ingest/warmup.py``)
BOOKKEEPING_KINDS = ("offset", "staged", "drained")


@dataclass(frozen=True)
class OffsetRange:
    topic: str
    partition: int
    start: int
    end: int  # inclusive
    max_event_ms: int = 0  # newest event time read from the partition so far (restores its watermark)


@dataclass(frozen=True)
class MetricRow:
    model_id: str
    model_version: str
    feature: str
    window_start: int
    window_end: int
    metric: str
    value: float
    p_value: float | None
    n_ref: int
    n_cur: int
    status: str
    # a drifted feature's top PSI contributors (the report's ``explain``), handed to alerting with
    # the window; not a column: what is stored and read back has none
    explain: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class ReferenceRow:
    model_id: str
    feature: str
    kind: str
    bins: bytes
    sketch: bytes
    n: int
    reference_id: str
    source: str


def flush_token(group: str, offsets: OffsetRange | None, rows: Sequence[PaneRow]) -> str:
    """The identity of a flush. A Kafka flush is named by where it starts: two members that read
    the same partition from the same stored offset write the same token, so ClickHouse keeps only
    the first insert (the fence); without a Kafka source (HTTP ingest, replay) the content is it."""
    h = hashlib.sha256(group.encode())
    if offsets is not None:
        h.update(f"|{offsets.topic}:{offsets.partition}:{offsets.start}".encode())
    else:
        for r in rows:
            h.update(f"|{r.kind}:{r.model_id}:{r.feature}:{r.pane_start}:{r.late}".encode())
            h.update(r.sketch)
    return h.hexdigest()[:32]
