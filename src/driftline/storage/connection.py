"""The connection every part of the store shares: one client, one lock, errors as StoreError.

This package is the only place that writes SQL. :class:`Connection` holds the plumbing; the
writes (:mod:`.writes`), the reads (:mod:`.reads`) and :class:`driftline.storage.store.Store`,
which opens a DSN, build on it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from driftline.storage.errors import StoreError
from driftline.storage.migrations import schema_statements


class Connection:
    """One ClickHouse client and the lock that serialises calls on it (thread-safe)."""

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

    def close(self) -> None:
        with self._lock:
            self._client.close()
            if self._lock_file:
                self._lock_file.close()
                self._lock_file = None

    def migrate(self) -> None:
        """Apply the versioned DDL files in order; every statement is idempotent."""
        for statement in schema_statements(self.database, self.ttl_days, self.cluster):
            self._command(statement)

    def tables(self) -> list[str]:
        return [r[0] for r in self._query(f"SHOW TABLES FROM {self.database}")]

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


def where_clause(*clauses: tuple[str, Any]) -> tuple[str, dict[str, Any]]:
    """AND of the clauses whose value is not None; each clause names its one parameter."""
    parts, params = [], {}
    for sql, value in clauses:
        if value is not None:
            parts.append(sql)
            params[sql[sql.index("%(") + 2 : sql.index(")s")]] = value
    return " AND ".join(parts), params
