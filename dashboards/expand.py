"""Run a dashboard's ClickHouse queries the way Grafana would, without Grafana.

Grafana interpolates the template variables, then grafana-clickhouse-datasource expands its
macros (``pkg/macros/macros.go`` of the plugin): ``$__timeFilter(c)`` becomes
``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``, ``$__fromTime`` / ``$__toTime``
``toDateTime(<s>)``, the ``_ms`` variants ``fromUnixTimestamp64Milli(<ms>)``, ``$__interval_s``
the interval in whole seconds. Used by ``tests/test_dashboards.py`` and ``dashboards/preview.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from driftline.storage.store import Store


@dataclass(frozen=True)
class TimeRange:
    from_ms: int
    to_ms: int
    interval_s: int = 60


@dataclass
class Result:
    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


def expand_macros(sql: str, r: TimeRange) -> str:
    def dt(ms: int) -> str:
        return f"toDateTime({ms // 1000})"

    def dt64(ms: int) -> str:
        return f"fromUnixTimestamp64Milli({ms})"

    def between(col: str, lo: str, hi: str) -> str:
        return f"{col} >= {lo} AND {col} <= {hi}"

    lo, hi, lo64, hi64 = dt(r.from_ms), dt(r.to_ms), dt64(r.from_ms), dt64(r.to_ms)
    sql = re.sub(r"\$__timeFilter_ms\(([^)]+)\)", lambda m: between(m[1], lo64, hi64), sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: between(m[1], lo, hi), sql)
    sql = sql.replace("$__fromTime_ms", lo64).replace("$__toTime_ms", hi64)
    sql = sql.replace("$__fromTime", lo).replace("$__toTime", hi)
    sql = sql.replace("$__interval_s", str(r.interval_s))
    if "$__" in sql:
        raise ValueError(f"a macro this emulation does not know: {sql}")
    return sql


def expand_variables(sql: str, values: dict[str, list[str]]) -> str:
    """``${name}`` / ``$name`` (single value) and ``${name:singlequote}`` (any number of values)."""

    def one(m: re.Match[str]) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2)
        vals = values[name]
        if fmt == "singlequote":
            return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in vals)
        if fmt is not None or len(vals) != 1:
            raise ValueError(f"${name}: unsupported format {fmt!r} for {len(vals)} value(s)")
        return vals[0]

    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", one, sql)


def run(store: Store, sql: str, values: dict[str, list[str]], r: TimeRange) -> Result:
    text = expand_variables(expand_macros(sql, r), values)
    names, types, rows = store.select(text)
    return Result(tuple(names), tuple(types), rows)


def resolve_variables(store: Store, dash: dict[str, Any], r: TimeRange) -> dict[str, list[str]]:
    """Each variable's query in order, as Grafana runs them; single-valued ones take the first value,
    multi-valued ones (with "All") every value."""
    values: dict[str, list[str]] = {}
    for v in dash["templating"]["list"]:
        options = [str(row[0]) for row in run(store, v["query"], values, r).rows]
        if not options:
            raise ValueError(f"variable {v['name']} has no options")
        values[v["name"]] = options if v["multi"] else options[:1]
    return values
