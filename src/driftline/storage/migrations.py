"""The schema: versioned DDL files in ``schema/``, applied in order (every statement idempotent)."""

from __future__ import annotations

import re
from pathlib import Path

SCHEMA_DIR = Path(__file__).with_name("schema")


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
