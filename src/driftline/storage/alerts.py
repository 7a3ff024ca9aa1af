"""Alerting's tables: alert state transitions, notification attempts, dead notifications, silences."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from driftline.contract import format_ts
from driftline.storage.store import Store


class AlertStore:
    """Alerting's tables, through the same Store (and so the same SQL-only-here rule)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write_alert_transitions(self, transitions: Sequence[tuple[str, str, Any, int]]) -> None:
        now = datetime.now(UTC)
        data = []
        for fp, state, a, breaches in transitions:
            d = a.to_dict()
            data.append(
                [
                    fp,
                    state,
                    breaches,
                    d["starts_at"] if state != "inactive" else None,
                    d["rule"],
                    d["model"],
                    d["version"],
                    d["feature"],
                    d["metric"],
                    d["severity"],
                    d["status"],
                    float(d["value"]),
                    float(d["threshold"]),
                    d["window_end"],
                    orjson.dumps(d).decode(),
                    now,
                ]
            )
        cols = (
            "fingerprint",
            "state",
            "breaches",
            "started",
            "rule",
            "model_id",
            "model_version",
            "feature",
            "metric",
            "severity",
            "status",
            "value",
            "threshold",
            "window_end",
            "alert",
            "at",
        )
        self.store._insert("alerts", data, cols)

    def alert_states(self) -> dict[str, tuple[Any, int, float | None, dict[str, Any]]]:
        rows = self.store._query(
            "SELECT fingerprint, argMax(state, at), argMax(breaches, at), argMax(started, at), "
            f"argMax(alert, at) FROM {self.store.database}.alerts GROUP BY fingerprint"
        )
        return {fp: (state, int(b), s, orjson.loads(a)) for fp, state, b, s, a in rows}

    def alert_history(self, model_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """State transitions and dead notifications (``state`` "dead", with the receiver, the
        attempts and the reason), newest first."""
        db, where = self.store.database, "WHERE model_id = %(m)s" if model_id else ""
        rows = self.store._query(
            f"SELECT state, alert, toUnixTimestamp64Milli(at), receiver, attempts, reason FROM ("
            f"SELECT state, alert, at, '' AS receiver, toUInt32(0) AS attempts, "
            f"'' AS reason FROM {db}.alerts {where} UNION ALL "
            f"SELECT 'dead', alert, at, receiver, attempts, reason FROM {db}.dead_notifications {where}"
            f") ORDER BY at DESC LIMIT {int(limit)}",
            {"m": model_id} if model_id else None,
        )
        history = []
        for state, alert, at_ms, receiver, attempts, reason in rows:
            h = {"state": state, "at": format_ts(at_ms), **orjson.loads(alert)}
            if state == "dead":
                h |= {"receiver": receiver, "attempts": int(attempts), "reason": reason}
            history.append(h)
        return history

    def write_dead(
        self,
        receiver: str,
        entry_id: str,
        kind: str,
        attempts: int,
        reason: str,
        alerts: Sequence[dict[str, Any]],
    ) -> None:
        """A notification given up, one row per alert it carried."""
        now = datetime.now(UTC)
        data = [
            [receiver, entry_id, kind, attempts, reason, a.get("model", ""), orjson.dumps(a).decode(), now]
            for a in alerts
        ]
        cols = ("receiver", "entry_id", "kind", "attempts", "reason", "model_id", "alert", "at")
        self.store._insert("dead_notifications", data, cols)

    def write_attempts(self, attempts: Sequence[Any]) -> None:
        now = datetime.now(UTC)
        data = [
            [a.receiver, a.entry_id, a.kind, a.attempt, a.outcome, a.http_status, a.detail, now]
            for a in attempts
        ]
        cols = ("receiver", "entry_id", "kind", "attempt", "outcome", "http_status", "detail", "at")
        if data:
            self.store._insert("notifications", data, cols)

    def attempts(self, receiver: str | None = None) -> list[tuple[Any, ...]]:
        where = "WHERE receiver = %(r)s" if receiver else ""
        return self.store._query(
            f"SELECT receiver, entry_id, kind, attempt, outcome, http_status, detail "
            f"FROM {self.store.database}.notifications {where} ORDER BY at, entry_id, attempt",
            {"r": receiver} if receiver else None,
        )

    def save_silence(
        self,
        sid: str,
        matchers: dict[str, str],
        starts_at: float,
        ends_at: float,
        comment: str,
        created_by: str,
    ) -> None:
        row = [
            sid,
            orjson.dumps(matchers).decode(),
            starts_at,
            ends_at,
            comment,
            created_by,
            datetime.now(UTC),
        ]
        self.store._insert(
            "silences", [row], ("id", "matchers", "starts_at", "ends_at", "comment", "created_by", "version")
        )

    def silences(self) -> list[SilenceRow]:
        rows = self.store._query(
            "SELECT id, matchers, starts_at, ends_at, comment, created_by "
            f"FROM {self.store.database}.silences FINAL ORDER BY starts_at"
        )
        return [(i, orjson.loads(m), s, e, c, b) for i, m, s, e, c, b in rows]

    def last_events(self) -> dict[tuple[str, str], float]:
        """Wall-clock time each (model, version) last had events stored (for staleness rules)."""
        rows = self.store._query(
            f"SELECT model_id, model_version, toUnixTimestamp64Milli(max(inserted_at)) "
            f"FROM {self.store.database}.pane_sketches WHERE kind = 'events' GROUP BY model_id, model_version"
        )
        return {(m, v): int(ms) / 1000 for m, v, ms in rows}


SilenceRow = tuple[str, dict[str, str], float, float, str, str]  # id, matchers, start, end, comment, by


def silence_json(row: SilenceRow, now: float) -> dict[str, Any]:
    """A silence as the API and ``driftline silence list`` show it."""
    sid, matchers, start, end, comment, by = row
    return {
        "id": sid,
        "matchers": matchers,
        "starts_at": format_ts(start * 1000),
        "ends_at": format_ts(end * 1000),
        "active": start <= now < end,
        "comment": comment,
        "created_by": by,
    }
