"""Delayed labels: the predictions kept for joining, the labels, and per pane the sketches of
the joined labels (``schema/008_labels.sql``). Every write is an idempotent upsert."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from driftline.storage.connection import where_clause
from driftline.storage.store import Store


@dataclass(frozen=True)
class PredictionRow:
    model_id: str
    event_id: str
    model_version: str
    pane_start: int
    score: float  # NaN: a class prediction
    label_class: str  # the prediction as category text
    labelled: bool  # carried its label inline: already counted at prediction time
    segments: str = "{}"  # JSON of the event's segments
    reference_id: str = ""  # the bins its event was folded on: its label joins only on those


@dataclass(frozen=True)
class LabelRow:
    model_id: str
    event_id: str
    label_num: float  # NaN: a class label
    label_text: str
    label_ts: int
    model_version: str = ""
    pane_start: int = -1  # -1: its prediction is not known (yet)
    source: str = ""


@dataclass(frozen=True)
class JoinedRow:
    """A prediction with its label, as the pane's sketches fold it."""

    model_version: str
    pane_start: int
    score: float
    prediction_class: str
    label_num: float
    label_text: str
    segments: str = "{}"


LOOKUP_CHUNK = 1000  # event ids per lookup query


class LabelStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def write_predictions(self, rows: Sequence[PredictionRow], horizon_ms: int) -> None:
        now = datetime.now(UTC)
        expires = (now + timedelta(milliseconds=horizon_ms)).replace(microsecond=0)
        data = [
            [r.model_id, r.event_id, r.model_version, r.pane_start, r.score, r.label_class, int(r.labelled),
             r.segments, r.reference_id, expires, now]
            for r in rows
        ]  # fmt: skip
        cols = ("model_id", "event_id", "model_version", "pane_start", "score", "class", "labelled",
                "segments", "reference_id", "expires_at", "inserted_at")  # fmt: skip
        if data:
            self.store._insert("predictions", data, cols)

    def write_labels(self, rows: Sequence[LabelRow]) -> None:
        now = datetime.now(UTC)
        data = [
            [r.model_id, r.event_id, r.label_num, r.label_text, r.label_ts, r.model_version, r.pane_start,
             r.source, now]
            for r in rows
        ]  # fmt: skip
        cols = ("model_id", "event_id", "label_num", "label_text", "label_ts", "model_version", "pane_start",
                "source", "inserted_at")  # fmt: skip
        if data:
            self.store._insert("labels", data, cols)

    def predictions(self, model_id: str, event_ids: Sequence[str]) -> dict[str, tuple[str, int, bool]]:
        """event_id -> (model version, pane start, labelled inline) of the stored predictions."""
        found: dict[str, tuple[str, int, bool]] = {}
        for i in range(0, len(event_ids), LOOKUP_CHUNK):  # a query's text is bounded (max_query_size)
            rows = self.store._query(
                "SELECT event_id, model_version, pane_start, labelled "
                f"FROM {self.store.database}.predictions FINAL "
                "WHERE model_id = %(m)s AND event_id IN %(ids)s AND expires_at > now()",
                {"m": model_id, "ids": tuple(event_ids[i : i + LOOKUP_CHUNK])},
            )
            found |= {e: (v, int(p), bool(labelled)) for e, v, p, labelled in rows}
        return found

    def waiting(self, horizon_ms: int, limit: int = 100_000) -> list[LabelRow]:
        """Labels whose prediction was not known when they arrived, within the horizon (older
        ones are orphans), oldest first."""
        rows = self.store._query(
            "SELECT model_id, event_id, label_num, label_text, label_ts, source "
            f"FROM {self.store.database}.labels FINAL WHERE pane_start = -1 "
            "AND inserted_at >= now64(3) - toIntervalMillisecond(%(h)s) "
            f"ORDER BY inserted_at LIMIT {int(limit)}",
            {"h": horizon_ms},
        )
        return [LabelRow(m, e, float(n), t, int(ts), source=s) for m, e, n, t, ts, s in rows]

    def orphans(self, horizon_ms: int) -> dict[str, int]:
        """Per model: labels still without a prediction after the label horizon (kept, not joined)."""
        rows = self.store._query(
            f"SELECT model_id, count() FROM {self.store.database}.labels FINAL WHERE pane_start = -1 "
            "AND inserted_at < now64(3) - toIntervalMillisecond(%(h)s) GROUP BY model_id",
            {"h": horizon_ms},
        )
        return {m: int(n) for m, n in rows}

    def joined(self, model_id: str, panes: Sequence[int], reference_id: str) -> list[JoinedRow]:
        """Every prediction of these panes folded on ``reference_id`` that has a label (and did not
        carry it inline): a prediction counted on other bins is left out, as its pane is."""
        if not panes:
            return []
        db = self.store.database
        rows = self.store._query(
            "SELECT p.model_version, p.pane_start, p.score, p.class, l.label_num, l.label_text, "
            "p.segments FROM (SELECT event_id, model_version, pane_start, score, class, segments "
            f"FROM {db}.predictions FINAL "
            " WHERE model_id = %(m)s AND pane_start IN %(panes)s AND labelled = 0"
            " AND reference_id = %(r)s) AS p "
            f"INNER JOIN (SELECT event_id, label_num, label_text FROM {db}.labels FINAL "
            " WHERE model_id = %(m)s"
            f" AND event_id IN (SELECT event_id FROM {db}.predictions WHERE model_id = %(m)s "
            "  AND pane_start IN %(panes)s)) AS l USING (event_id) "
            "ORDER BY p.model_version, p.pane_start, event_id",
            {"m": model_id, "panes": tuple(panes), "r": reference_id},
        )
        return [JoinedRow(v, int(p), float(s), c, float(n), t, g) for v, p, s, c, n, t, g in rows]

    def write_joined(self, rows: Sequence[tuple[str, str, str, int, int, int, bytes, str]]) -> None:
        """(kind, model, version, pane start, pane ms, n, sketch, reference id) per pane and kind."""
        now = datetime.now(UTC)
        data = [[*r, now] for r in rows]
        cols = ("kind", "model_id", "model_version", "pane_start", "pane_ms", "n", "sketch", "reference_id",
                "computed_at")  # fmt: skip
        if data:
            self.store._insert("pane_joined", data, cols)

    def label_counts(self, model_id: str | None = None) -> dict[str, tuple[int, int]]:
        """Per model: (labels stored, labels joined to a prediction)."""
        where, params = where_clause(("model_id = %(m)s", model_id))
        rows = self.store._query(
            f"SELECT model_id, count(), countIf(pane_start >= 0) FROM {self.store.database}.labels FINAL "
            f"{'WHERE ' + where if where else ''} GROUP BY model_id",
            params or None,
        )
        return {m: (int(n), int(j)) for m, n, j in rows}


def number(value: object) -> float:
    """A JSON number as a float; NaN for anything else (text, bools, null)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)
