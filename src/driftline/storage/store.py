"""The one seam to ClickHouse: embedded chDB (``chdb:///dir``) or a server (``http(s)://``).

This module is the only place that writes SQL. Every write is idempotent: a flush carries a
deterministic ``insert_deduplication_token``, and its rows include the Kafka offsets they cover,
so a consumer that restarts resumes after the last flush ClickHouse acknowledged.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from driftline.contract import format_ts

SCHEMA_DIR = Path(__file__).with_name("schema")
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


class StoreError(RuntimeError):
    """ClickHouse refused or could not be reached; the caller may retry the same write."""


class StoreLockedError(StoreError):
    """Another process owns the embedded chDB directory."""


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


@dataclass(frozen=True)
class OffsetRange:
    topic: str
    partition: int
    start: int
    end: int  # inclusive
    max_event_ms: int = 0  # newest event time read from the partition so far (restores its watermark)


class Superseded(StoreError):
    """The offsets of a flush are already stored (by a member that took the partition over, or by
    an earlier attempt whose acknowledgement was lost): nothing was added; resume after them."""


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


class Store:
    """ClickHouse access for every component. Thread-safe: calls are serialised per store."""

    def __init__(
        self,
        client: Client,
        database: str,
        ttl_days: int,
        lock_file: IO[str] | None = None,
        cluster: str | None = None,
    ) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._lock_file = lock_file
        self.database = database
        self.ttl_days = ttl_days
        self.cluster = cluster
        # Local state files (dead-letter spill) live beside an embedded store, else in the cwd.
        self.local_dir = Path(lock_file.name).parent if lock_file else Path.cwd()

    @classmethod
    def open(
        cls, dsn: str, database: str = "driftline", ttl_days: int = 90, cluster: str | None = None
    ) -> Store:
        """``chdb:///abs/dir`` (or a plain directory path) for embedded; ``http(s)://...`` for a server.

        ``cluster`` (server only) creates the schema ``ON CLUSTER`` with Replicated engines.
        """
        if dsn.startswith(("http://", "https://")):
            url = urlparse(dsn)
            try:
                client = clickhouse_connect.get_client(
                    host=url.hostname or "localhost",
                    port=url.port or (8443 if url.scheme == "https" else 8123),
                    username=url.username or "default",
                    password=url.password or "",
                    secure=url.scheme == "https",
                )
            except Exception as exc:
                raise StoreError(f"cannot reach ClickHouse at {url.hostname}:{url.port}: {exc}") from None
            store = cls(client, url.path.strip("/") or database, ttl_days, cluster=cluster)
        else:
            path = Path(dsn.removeprefix("chdb://")).expanduser().resolve()
            path.mkdir(parents=True, exist_ok=True)
            lock = _lock_directory(path)
            try:
                client = clickhouse_connect.get_client(interface="chdb", path=str(path))
            except Exception as exc:
                lock.close()
                detail = str(exc)
                if "already initialized with path" in detail:
                    detail = "this process already has another chDB directory open (one per process)"
                raise StoreError(f"cannot open chDB at {path}: {detail}") from None
            store = cls(client, database, ttl_days, lock)
        store.migrate()
        return store

    def close(self) -> None:
        with self._lock:
            self._client.close()
            if self._lock_file:
                self._lock_file.close()
                self._lock_file = None

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply the versioned DDL files in order; every statement is idempotent."""
        for statement in schema_statements(self.database, self.ttl_days, self.cluster):
            self._command(statement)

    def tables(self) -> list[str]:
        return [r[0] for r in self._query(f"SHOW TABLES FROM {self.database}")]

    # -- pane sketches ------------------------------------------------------------------------

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
                "",
                -1,
                -1,
                -1,
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

    def pane_changes(self, horizon_ms: int) -> list[tuple[str, str, int, int]]:
        """(model, version, pane start, last write in epoch ms) of every pane with events within
        ``horizon_ms`` of event time before the newest stored pane."""
        t = f"{self.database}.pane_sketches"
        rows = self._query(
            "SELECT model_id, model_version, pane_start, toUnixTimestamp64Milli(max(inserted_at)) "
            f"FROM {t} WHERE kind = 'events' "
            f"AND pane_start >= (SELECT max(pane_start) FROM {t} WHERE kind = 'events') - %(h)s "
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
        where, params = _where(
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
        kinds: Iterable[str] = ("numeric", "categorical", "latency", "fairness", "events"),
    ) -> list[PaneRow]:
        """Every stored partial for panes starting in ``[start_ms, end_ms)`` (late ones included)."""
        where, params = _where(
            ("kind IN %(kinds)s", tuple(kinds)),
            ("model_id = %(m)s", model_id),
            ("pane_start >= %(s)s", start_ms),
            ("pane_start < %(e)s", end_ms),
            ("model_version = %(v)s", model_version),
        )
        rows = self._query(
            "SELECT kind, model_id, model_version, feature, pane_start, pane_ms, late, n, sketch, "
            f"reference_id FROM {self.database}.pane_sketches WHERE {where} "
            "ORDER BY pane_start, feature, kind",
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
        where, params = _where(
            ("model_id = %(m)s", model_id),
            ("pane_start >= %(s)s", start_ms),
            ("pane_start < %(e)s", end_ms),
            ("model_version = %(v)s", model_version),
        )
        counts = self._query(
            f"SELECT pane_start, count() FROM {self.database}.pane_sketches WHERE kind != 'offset' AND "
            f"{where} GROUP BY pane_start ORDER BY pane_start",
            params,
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
        where, params = _where(("model_id = %(m)s", model_id), ("model_version = %(v)s", model_version))
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

    # -- references ---------------------------------------------------------------------------

    def save_reference(self, rows: Sequence[ReferenceRow]) -> None:
        now = datetime.now(UTC)
        data = [
            [r.model_id, r.feature, r.kind, r.bins, r.sketch, r.n, r.reference_id, r.source, now]
            for r in rows
        ]
        self._insert("references", data, REFERENCE_COLUMNS)

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

    # -- metrics ------------------------------------------------------------------------------

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

    def metrics(
        self, model_id: str, metric: str | None = None, feature: str | None = None
    ) -> list[MetricRow]:
        where, params = _where(
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

    def select(self, sql: str) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
        """Run a read-only query as another reader would (Grafana's panels): names, types, rows."""
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raise StoreError("only SELECT queries may be run through Store.select")
        with self._lock:
            try:
                result = self._client.query(sql)
            except ClickHouseError as exc:
                raise StoreError(str(exc).splitlines()[0]) from exc
        return (
            list(result.column_names),
            [t.name for t in result.column_types],
            [tuple(r) for r in result.result_rows],
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _command(self, sql: str) -> None:
        with self._lock:
            try:
                self._client.command(sql)
            except ClickHouseError as exc:
                raise StoreError(str(exc).splitlines()[0]) from exc

    def _query(
        self, sql: str, params: dict[str, Any] | None = None, column_formats: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._query_locked(sql, params, column_formats)

    def _query_locked(
        self, sql: str, params: dict[str, Any] | None = None, column_formats: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        try:
            result = self._client.query(sql, parameters=params, column_formats=column_formats)
            return [tuple(r) for r in result.result_rows]
        except ClickHouseError as exc:
            raise StoreError(str(exc).splitlines()[0]) from exc

    def _insert(
        self,
        table: str,
        data: list[list[Any]],
        columns: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            self._insert_locked(table, data, columns, settings)

    def _insert_locked(
        self,
        table: str,
        data: list[list[Any]],
        columns: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> None:
        try:
            self._client.insert(
                f"{self.database}.{table}", data, column_names=list(columns), settings=settings
            )
        except ClickHouseError as exc:
            raise StoreError(str(exc).splitlines()[0]) from exc


def _where(*clauses: tuple[str, Any]) -> tuple[str, dict[str, Any]]:
    """AND of the clauses whose value is not None; each clause names its one parameter."""
    parts, params = [], {}
    for sql, value in clauses:
        if value is not None:
            parts.append(sql)
            params[sql[sql.index("%(") + 2 : sql.index(")s")]] = value
    return " AND ".join(parts), params


def schema_statements(database: str, ttl_days: int, cluster: str | None = None) -> list[str]:
    """The DDL, in order. With a cluster: ``ON CLUSTER`` and the Replicated twin of every engine
    (a replicated table deduplicates retried inserts by token on its own)."""
    statements = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    for path in sorted(SCHEMA_DIR.glob("*.sql")):
        statements += _statements(path.read_text().format(database=database, ttl_days=int(ttl_days)))
    return statements if cluster is None else [_on_cluster(s, database, cluster) for s in statements]


_REPLICA = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"  # ClickHouse macros


def _on_cluster(statement: str, database: str, cluster: str) -> str:
    head, _, rest = statement.partition("\n")
    head = re.sub(
        rf"^((?:CREATE (?:DATABASE|TABLE) IF NOT EXISTS|ALTER TABLE) {re.escape(database)}(?:\.\w+)?)",
        rf"\1 ON CLUSTER {cluster}",
        head,
    )
    rest = re.sub(
        r"ENGINE = (\w*)MergeTree(?:\((.*?)\))?",
        lambda m: f"ENGINE = Replicated{m[1]}MergeTree({_REPLICA}{', ' + m[2] if m[2] else ''})",
        rest,
    )
    rest = re.sub(r"\nSETTINGS non_replicated_deduplication_window = \d+", "", rest)
    return head + ("\n" + rest if rest else "")


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _lock_directory(path: Path) -> IO[str]:
    """chDB allows one process per directory; fail early and say who holds it."""
    lock = (path / "driftline.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise StoreLockedError(
            f"the chDB store {path} is in use by process {holder}; embedded ClickHouse allows one "
            "process per directory: stop that process, query it through its API, or use a ClickHouse "
            "server URL (http://...)"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()} ({' '.join(Path('/proc/self/cmdline').read_text().split(chr(0)))[:200]})")
    lock.flush()
    return lock


class AlertStore:
    """Alerting's tables, through the same Store (and so the same SQL-only-here rule)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write_alert_transitions(self, transitions: Sequence[tuple[str, str, Any, int]]) -> None:
        import orjson

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
        import orjson

        rows = self.store._query(
            "SELECT fingerprint, argMax(state, at), argMax(breaches, at), argMax(started, at), "
            f"argMax(alert, at) FROM {self.store.database}.alerts GROUP BY fingerprint"
        )
        return {fp: (state, int(b), s, orjson.loads(a)) for fp, state, b, s, a in rows}

    def alert_history(self, model_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """State transitions and dead notifications (``state`` "dead", with the receiver, the
        attempts and the reason), newest first."""
        import orjson

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
        import orjson

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
        import orjson

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

    def silences(self) -> list[tuple[str, dict[str, str], float, float, str, str]]:
        import orjson

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


class ModelStore:
    """Model registrations (``models`` table)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, model_id: str, config: dict[str, Any]) -> None:
        import orjson

        row = [model_id, orjson.dumps(config).decode(), datetime.now(UTC)]
        self.store._insert("models", [row], ("model_id", "config", "updated_at"))

    def all(self) -> dict[str, dict[str, Any]]:
        import orjson

        rows = self.store._query(
            f"SELECT model_id, config FROM {self.store.database}.models FINAL ORDER BY model_id"
        )
        return {m: orjson.loads(c) for m, c in rows}

    def metric_series(
        self, model_id: str, metric: str, feature: str | None, start: int | None, end: int | None
    ) -> list[tuple[str, int, float, float | None]]:
        where, params = _where(
            ("model_id = %(m)s", model_id),
            ("metric = %(metric)s", metric),
            ("feature = %(f)s", feature),
            ("window_end > %(s)s", start),
            ("window_end <= %(e)s", end),
        )
        return self.store._query(
            f"SELECT feature, window_end, value, p_value FROM {self.store.database}.drift_metrics FINAL "
            f"WHERE {where} ORDER BY feature, window_end",
            params,
        )
