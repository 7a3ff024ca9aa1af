"""The store: embedded chDB (``chdb:///dir``) or a ClickHouse server (``http(s)://``), same code.

:class:`Store` is the writes and reads of :mod:`.writes` and :mod:`.reads` over one connection;
``Store.open`` turns a DSN into one and applies the schema.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import clickhouse_connect

from driftline.storage.errors import StoreError, StoreLockedError
from driftline.storage.reads import Reads
from driftline.storage.writes import Writes


class Store(Writes, Reads):
    """ClickHouse access for every component. Thread-safe: calls are serialised per store."""

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
