"""Events of models without a reference, staged in ``pane_sketches`` until one is fitted.

A staged row holds one flush's events of one model from one partition (``kind = 'staged'``, the
messages packed in ``sketch``, their offsets in ``offset_start``/``offset_end``); it is written in
the same insert as the flush's offsets, so staging is exactly-once as folding is. Once the model
has a reference, each staged row is folded and its panes written with a ``drained`` marker for
it, in one insert named by the staged row and the reference (:func:`drain_token`): a crash before
it leaves the row to fold, a crash after leaves nothing to fold, and two processes folding the
same row write the same insert, which ClickHouse keeps once.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from driftline.storage.rows import PaneRow
from driftline.storage.store import Store

_LEN = struct.Struct("<I")


def pack(messages: Sequence[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(m)) + m for m in messages)


def unpack(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        yield data[pos : pos + n]
        pos += n


def staged_row(model: str, ts_ms: int, offsets: tuple[int, int], messages: Sequence[bytes]) -> PaneRow:
    return PaneRow("staged", model, "", "", ts_ms, 0, False, len(messages), pack(messages), "",
                   offsets[0], offsets[1])  # fmt: skip


def drained_row(chunk: StagedChunk, reference_id: str) -> PaneRow:
    return PaneRow("drained", chunk.model_id, "", "", chunk.ts_ms, 0, False, chunk.n, b"", reference_id,
                   chunk.offset_start, chunk.offset_end, (chunk.topic, chunk.partition))  # fmt: skip


def drain_token(group: str, chunk: StagedChunk, reference_id: str) -> str:
    key = f"{group}|{chunk.model_id}|{chunk.topic}|{chunk.partition}|{chunk.offset_start}|{reference_id}"
    return f"drain:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class StagedChunk:
    model_id: str
    topic: str
    partition: int
    offset_start: int
    offset_end: int
    ts_ms: int  # the oldest event time in it
    n: int
    data: bytes

    def messages(self) -> Iterator[bytes]:
        return unpack(self.data)


class WarmupStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _undrained(self, where: str) -> str:
        t = f"{self.store.database}.pane_sketches"
        return (
            f"kind = 'staged' AND {where} AND (model_id, source_topic, source_partition, offset_start) "
            "NOT IN (SELECT model_id, source_topic, source_partition, offset_start "
            f"FROM {t} WHERE kind = 'drained' AND {where})"
        )

    def staged_counts(self, group: str | None = None) -> dict[str, int]:
        """Model -> events staged and not folded yet (of one consumer group; None: any)."""
        where = "consumer_group = %(g)s" if group is not None else "1"
        rows = self.store._query(
            f"SELECT model_id, sum(n) FROM {self.store.database}.pane_sketches "
            f"WHERE {self._undrained(where)} GROUP BY model_id ORDER BY model_id",
            {"g": group},
        )
        return {m: int(n) for m, n in rows}

    def chunks(self, group: str, model: str) -> list[StagedChunk]:
        """The model's staged rows not folded yet, oldest offsets first."""
        where = "consumer_group = %(g)s AND model_id = %(m)s"
        rows = self.store._query(
            "SELECT model_id, source_topic, source_partition, offset_start, offset_end, pane_start, n, "
            f"sketch FROM {self.store.database}.pane_sketches WHERE {self._undrained(where)} "
            "ORDER BY source_topic, source_partition, offset_start",
            {"g": group, "m": model},
            column_formats={"sketch": "bytes"},
        )
        return [
            StagedChunk(m, t, int(p), int(s), int(e), int(ts), int(n), bytes(d))
            for m, t, p, s, e, ts, n, d in rows
        ]
