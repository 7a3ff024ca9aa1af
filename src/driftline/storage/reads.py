"""Reads: stored pane partials, what changed since windows were computed, references, metrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from driftline.storage.connection import Connection, where_clause
from driftline.storage.rows import BOOKKEEPING_KINDS, MetricRow, PaneRow, ReferenceRow


class Reads(Connection):
    def pane_changes(self, horizon_ms: int) -> list[tuple[str, str, int, int]]:
        """(model, version, pane start, last write in epoch ms) of every pane with events within
        ``horizon_ms`` of event time before the newest stored pane."""
        t = f"{self.database}.pane_sketches"
        rows = self._query(  # a label joined later changes its prediction's pane too
            "SELECT model_id, model_version, pane_start, toUnixTimestamp64Milli(max(at)) FROM ("
            f"SELECT model_id, model_version, pane_start, inserted_at AS at FROM {t} "
            "WHERE kind = 'events' UNION ALL SELECT model_id, model_version, pane_start, computed_at AS at "
            f"FROM {self.database}.pane_joined) "
            f"WHERE pane_start >= (SELECT max(pane_start) FROM {t} WHERE kind = 'events') - %(h)s "
            "GROUP BY model_id, model_version, pane_start ORDER BY model_id, model_version, pane_start",
            {"h": horizon_ms},
        )
        return [(m, v, int(p), int(t)) for m, v, p, t in rows]

    def windows_computed(
        self,
        window_ms: int,
        after_ms: int,
        until_ms: int | None = None,
        model_id: str | None = None,
        model_version: str | None = None,
    ) -> dict[tuple[str, str, int], int]:
        """When each window of this length ending in ``(after_ms, until_ms]`` was last computed
        (epoch ms of the read it was computed from)."""
        where, params = where_clause(
            ("window_end - window_start = %(w)s", window_ms),
            ("window_end > %(a)s", after_ms),
            ("window_end <= %(u)s", until_ms),
            ("model_id = %(m)s", model_id),
            ("model_version = %(v)s", model_version),
        )
        rows = self._query(
            "SELECT model_id, model_version, window_end, toUnixTimestamp64Milli(max(computed_at)) "
            f"FROM {self.database}.drift_metrics WHERE feature = '' AND metric = 'events' AND {where} "
            "GROUP BY model_id, model_version, window_end",
            params,
        )
        return {(m, v, int(e)): int(t) for m, v, e, t in rows}

    def pane_rows(
        self,
        model_id: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        model_version: str | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[PaneRow]:
        """Every stored partial (of ``kinds``; none: every kind of sketch) for panes starting in
        ``[start_ms, end_ms)``, late ones included."""
        where, params = where_clause(
            ("kind NOT IN %(bookkeeping)s", BOOKKEEPING_KINDS),
            ("kind IN %(kinds)s", None if kinds is None else tuple(kinds)),
            ("model_id = %(m)s", model_id),
            ("pane_start >= %(s)s", start_ms),
            ("pane_start < %(e)s", end_ms),
            ("model_version = %(v)s", model_version),
        )
        db = self.database
        rows = self._query(  # and the sketches of labels joined later (pane_joined), as late rows
            "SELECT * FROM ("
            "SELECT kind, model_id, model_version, feature, pane_start, pane_ms, late, n, sketch, "
            f"reference_id FROM {db}.pane_sketches WHERE {where} UNION ALL "
            "SELECT kind, model_id, model_version, '' AS feature, pane_start, pane_ms, toUInt8(1) AS late, "
            f"n, sketch, reference_id FROM {db}.pane_joined FINAL WHERE {where}"
            ") ORDER BY pane_start, feature, kind",
            params,
            column_formats={"sketch": "bytes"},
        )
        return [
            PaneRow(k, m, v, f, int(p), int(pm), bool(late), int(n), bytes(s), r)
            for k, m, v, f, p, pm, late, n, s, r in rows
        ]

    def pane_row_chunks(
        self,
        model_id: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        model_version: str | None = None,
        rows_per_chunk: int = 20_000,
    ) -> Iterator[list[PaneRow]]:
        """:meth:`pane_rows` in pieces of whole panes, about ``rows_per_chunk`` rows each, each its
        own query: the lock is free between pieces, so a long read delays a flush by one piece at most."""
        where, params = where_clause(
            ("model_id = %(m)s", model_id),
            ("pane_start >= %(s)s", start_ms),
            ("pane_start < %(e)s", end_ms),
            ("model_version = %(v)s", model_version),
        )
        counts = self._query(
            f"SELECT pane_start, count() FROM {self.database}.pane_sketches "
            f"WHERE kind NOT IN %(bookkeeping)s AND {where} GROUP BY pane_start ORDER BY pane_start",
            params | {"bookkeeping": BOOKKEEPING_KINDS},
        )
        lo, rows = start_ms, 0
        for pane, n in counts:
            if rows and rows + int(n) > rows_per_chunk:
                yield self.pane_rows(model_id, lo, int(pane), model_version)
                lo, rows = int(pane), 0
            rows += int(n)
        if rows:
            yield self.pane_rows(model_id, lo, end_ms, model_version)

    def newest_pane(self, model_id: str, model_version: str | None = None) -> int | None:
        """Start of the model's newest pane with events (None: nothing stored)."""
        where, params = where_clause(("model_id = %(m)s", model_id), ("model_version = %(v)s", model_version))
        ((n, newest),) = self._query(
            f"SELECT count(), max(pane_start) FROM {self.database}.pane_sketches "
            f"WHERE kind = 'events' AND {where}",
            params,
        )
        return int(newest) if n else None

    def models(self) -> list[str]:
        rows = self._query(
            f"SELECT DISTINCT model_id FROM {self.database}.pane_sketches WHERE kind = 'events' ORDER BY 1"
        )
        return [r[0] for r in rows]

    def references(self, model_id: str | None = None) -> list[ReferenceRow]:
        """The newest reference of each model: the rows of its newest save (one insert, one time),
        so no row of an older reference under another key (a segment it had) comes along."""
        where = "WHERE model_id = %(m)s" if model_id else ""
        rows = self._query(
            "SELECT model_id, feature, kind, bins, sketch, n, reference_id, source, created_at "
            f"FROM {self.database}.references FINAL {where} ORDER BY model_id, feature, kind",
            {"m": model_id} if model_id else None,
            column_formats={"bins": "bytes", "sketch": "bytes"},
        )
        newest: dict[str, Any] = {}
        for m, *_, created in rows:
            newest[m] = max(newest.get(m, created), created)
        return [
            ReferenceRow(m, f, k, bytes(b), bytes(sk), int(n), r, src)
            for m, f, k, b, sk, n, r, src, created in rows
            if created == newest[m]
        ]

    def reference_by_id(self, model_id: str, reference_id: str) -> list[ReferenceRow]:
        """A reference of the model by its id, replaced or not (none: saved before the history)."""
        rows = self._query(
            "SELECT model_id, feature, kind, bins, sketch, n, reference_id, source, created_at "
            f"FROM {self.database}.reference_history FINAL "
            "WHERE model_id = %(m)s AND reference_id = %(r)s ORDER BY feature, kind",
            {"m": model_id, "r": reference_id},
            column_formats={"bins": "bytes", "sketch": "bytes"},
        )
        newest = max((r[-1] for r in rows), default=None)  # the rows of its newest save only
        return [
            ReferenceRow(m, f, k, bytes(b), bytes(sk), int(n), r, src)
            for m, f, k, b, sk, n, r, src, created in rows
            if created == newest
        ]

    def reference_events(
        self, model_id: str, start_ms: int | None, end_ms: int | None, model_version: str | None = None
    ) -> dict[str, int]:
        """Reference id -> events of the model's panes in ``[start_ms, end_ms)`` folded on its bins."""
        where, params = where_clause(
            ("model_id = %(m)s", model_id),
            ("pane_start >= %(s)s", start_ms),
            ("pane_start < %(e)s", end_ms),
            ("model_version = %(v)s", model_version),
        )
        rows = self._query(
            f"SELECT reference_id, sum(n) FROM {self.database}.pane_sketches WHERE kind = 'events' AND "
            f"{where} GROUP BY reference_id",
            params,
        )
        return {r: int(n) for r, n in rows}

    def references_saved(self) -> int:
        """Epoch ms of the newest reference save (0: none): whether to reload them."""
        ((at,),) = self._query(
            f"SELECT toUnixTimestamp64Milli(max(created_at)) FROM {self.database}.reference_versions"
        )
        return int(at or 0)

    def reference_versions(self, model_id: str) -> list[dict[str, Any]]:
        """Every reference the model had, oldest first, with when each applied (until the next)."""
        rows = self._query(
            "SELECT reference_id, source, events, features, toUnixTimestamp64Milli(created_at) "
            f"FROM {self.database}.reference_versions WHERE model_id = %(m)s ORDER BY created_at",
            {"m": model_id},
        )
        out: list[dict[str, Any]] = []
        for ref_id, source, events, features, at in rows:
            if out:
                out[-1]["applied_until"] = int(at)
            version = {
                "reference_id": ref_id,
                "source": source,
                "events": int(events),
                "features": int(features),
            }
            out.append(version | {"applied_from": int(at), "applied_until": None})
        return out

    def metrics(
        self, model_id: str, metric: str | None = None, feature: str | None = None
    ) -> list[MetricRow]:
        where, params = where_clause(
            ("model_id = %(m)s", model_id),
            ("metric = %(metric)s", metric or None),
            ("feature = %(f)s", feature),
        )
        rows = self._query(
            "SELECT model_id, model_version, feature, window_start, window_end, metric, value, p_value, "
            f"n_ref, n_cur, status FROM {self.database}.drift_metrics FINAL WHERE {where} "
            "ORDER BY window_end, feature, metric",
            params,
        )
        return [MetricRow(*r) for r in rows]

    def metric_series(
        self, model_id: str, metric: str, feature: str | None, start: int | None, end: int | None
    ) -> list[tuple[str, int, float, float | None]]:
        where, params = where_clause(
            ("model_id = %(m)s", model_id),
            ("metric = %(metric)s", metric),
            ("feature = %(f)s", feature),
            ("window_end > %(s)s", start),
            ("window_end <= %(e)s", end),
        )
        return self._query(
            f"SELECT feature, window_end, value, p_value FROM {self.database}.drift_metrics FINAL "
            f"WHERE {where} ORDER BY feature, window_end",
            params,
        )
