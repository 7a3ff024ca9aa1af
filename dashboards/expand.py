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
from urllib.parse import quote

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


Values = dict[str, str | list[str]]  # a single-value variable's value, or a multi-value one's list


def grafana_format(value: str | list[str], fmt: str | None) -> str:
    """A variable's value as Grafana's ``formatRegistry`` writes it (scenes, Grafana 12)."""
    if fmt == "percentencode":  # encodeURIComponent plus !'()*: only A-Z a-z 0-9 - _ . ~ and %XX remain
        text = value if isinstance(value, str) else "{" + ",".join(value) + "}"
        return quote(text, safe="")
    values = [value] if isinstance(value, str) else value
    if fmt == "singlequote":  # escapes ' as \' and nothing else
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":  # escapes ' as '' and " as \"
        return ",".join("'" + v.replace("'", "''").replace('"', '\\"') + "'" for v in values)
    if fmt is None and isinstance(value, str):
        return value
    raise ValueError(f"unsupported format {fmt!r} for {value!r}")


def expand_variables(sql: str, values: Values) -> str:
    """``${name}`` / ``$name`` (raw) and ``${name:format}`` for the formats of :func:`grafana_format`."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        try:
            return grafana_format(values[name], m.group(2))
        except ValueError as exc:
            raise ValueError(f"${name}: {exc}") from None

    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", one, sql)


def run(store: Store, sql: str, values: Values, r: TimeRange) -> Result:
    text = expand_variables(expand_macros(sql, r), values)
    names, types, rows = store.select(text)
    return Result(tuple(names), tuple(types), rows)


def resolve_variables(store: Store, dash: dict[str, Any], r: TimeRange) -> Values:
    """Each variable's query in order, as Grafana runs them; single-valued ones take the first value,
    multi-valued ones (with "All") every value."""
    values: Values = {}
    for v in dash["templating"]["list"]:
        options = [str(row[0]) for row in run(store, v["query"], values, r).rows]
        if not options:
            raise ValueError(f"variable {v['name']} has no options")
        values[v["name"]] = options if v["multi"] else options[0]
    return values
