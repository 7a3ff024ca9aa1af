"""Generate the Grafana dashboards (JSON) from this file; the JSON is checked in.

    python -m dashboards.build            # rewrite dashboards/grafana/dashboards/*.json
    python -m dashboards.build --check    # exit 1 if the checked-in JSON is stale

Conventions of every ClickHouse query (grafana-clickhouse-datasource, SQL editor):

* driftline stores times as Int64 epoch milliseconds (``pane_start``, ``window_start/end``), so
  those are filtered with ``col >= toUnixTimestamp($__fromTime) * 1000 AND col <= ...$__toTime...``
  (constant bounds: the sorting key stays usable) and bucketed with ``$__interval_s``;
  ``$__timeFilter(col)`` is used on the real ``DateTime64`` columns (``alerts.at``, ``notifications.at``).
* Time series come back in long format (``time``, a label column, ``value``) ordered by time; the
  plugin turns them into one series per label value (the legend shows the label via
  ``displayName: ${__field.labels.<label>}``).
* ``drift_metrics`` is a ReplacingMergeTree: always read with ``FINAL``.
* Variables reach the SQL only percent-encoded (``${model:percentencode}``, which leaves nothing
  but ``A-Z a-z 0-9 - _ . ~ %``) inside a literal that ClickHouse decodes (:func:`one`,
  :func:`many`): no value, however hostile, can end the literal. Grafana's ``singlequote`` and
  ``sqlstring`` formats escape ``'`` but not the backslash, which ClickHouse also treats as an escape, so
  a value ending in a backslash closes the literal early (a URL can set any value:
  ``?var-model=...``). Grafana connects as a read-only ClickHouse user as well
  (``dashboards/clickhouse/grafana-user.xml``).

Each panel declares the columns its query returns; ``tests/test_dashboards.py`` runs every query
against a chDB store filled by ``dashboards/sample.py`` and checks them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "grafana" / "dashboards"
PLUGIN_VERSION = "4.11.0"  # grafana-clickhouse-datasource, pinned in docker-compose.yml
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "driftline-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "driftline-prometheus"}
TIME_SERIES, TABLE = 0, 1  # the plugin's `format` values
DB = "driftline"


def one(name: str) -> str:
    """A single-value variable as a ClickHouse String expression."""
    return f"decodeURLComponent('${{{name}:percentencode}}')"


def many(name: str) -> str:
    """A multi-value variable as an Array(String) expression. Grafana percent-encodes a list as
    ``{a,b}``: braces off, split at commas (a value with a comma or an outer brace cannot be told
    apart and matches nothing; it never escapes the literal)."""
    return f"splitByChar(',', trim(BOTH '{{}}' FROM {one(name)}))"


MODEL = f"model_id = {one('model')} AND model_version = {one('version')}"


def in_range(col: str) -> str:
    """Int64 epoch-ms column inside the dashboard's time range."""
    return f"{col} >= toUnixTimestamp($__fromTime) * 1000 AND {col} <= toUnixTimestamp($__toTime) * 1000"


def bucket(col: str) -> str:
    """Int64 epoch-ms column to the start of its $__interval_s bucket, as a DateTime64."""
    return f"fromUnixTimestamp64Milli(intDiv({col}, $__interval_s * 1000) * $__interval_s * 1000)"


# -- panels and queries -------------------------------------------------------------------------


@dataclass
class Query:
    """One target. ``sql`` for ClickHouse (with the columns it returns), ``expr`` for Prometheus."""

    sql: str = ""
    columns: tuple[str, ...] = ()
    format: int = TIME_SERIES
    expr: str = ""
    legend: str = ""

    def target(self, ref_id: str) -> dict[str, Any]:
        if self.expr:
            return {
                "datasource": PROMETHEUS,
                "refId": ref_id,
                "expr": self.expr,
                "legendFormat": self.legend or "__auto",
                "range": True,
                "editorMode": "code",
            }
        return {
            "datasource": CLICKHOUSE,
            "refId": ref_id,
            "editorType": "sql",
            "format": self.format,
            "queryType": "timeseries" if self.format == TIME_SERIES else "table",
            "rawSql": " ".join(self.sql.split()),
            "pluginVersion": PLUGIN_VERSION,
        }


@dataclass
class Panel:
    title: str
    type: str  # timeseries | stat | table | heatmap
    queries: list[Query]
    w: int = 12
    h: int = 8
    description: str = ""
    unit: str = ""
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)  # (from value, color)
    threshold_line: bool = False
    label: str = ""  # long-format label column: series named by it
    decimals: int | None = None
    min: float | None = None

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {"custom": {}}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.min is not None:
            defaults["min"] = self.min
        if self.label:
            defaults["displayName"] = f"${{__field.labels.{self.label}}}"
        steps = self.thresholds or [(None, "green")]
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}
        if self.type == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 0,
                "showPoints": "never",
                "spanNulls": True,
                "thresholdsStyle": {"mode": "line" if self.threshold_line else "off"},
            }
            defaults["color"] = {"mode": "palette-classic"}
        elif self.type == "stat":
            defaults["color"] = {"mode": "thresholds"}
        panel: dict[str, Any] = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "gridPos": {"x": x, "y": y, "w": self.w, "h": self.h},
            "datasource": queries_datasource(self.queries),
            "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": default_options(self.type),
        }
        if self.description:
            panel["description"] = self.description
        return panel


def queries_datasource(queries: list[Query]) -> dict[str, str]:
    kinds = {bool(q.expr) for q in queries}
    if len(kinds) != 1:
        raise ValueError("a panel's queries must share one datasource")
    return PROMETHEUS if kinds.pop() else CLICKHOUSE


def default_options(kind: str) -> dict[str, Any]:
    if kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "justifyMode": "auto",
        }
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if kind == "heatmap":
        return {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "fill": "dark-orange",
                "scale": "exponential",
                "exponent": 0.5,
                "steps": 64,
                "reverse": False,
                "min": 0,
            },
            "yAxis": {"axisPlacement": "left", "reverse": True},
            "rowsFrame": {"layout": "auto"},
            "cellValues": {"decimals": 2},
            "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": True},
            "legend": {"show": True},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
        }
    raise ValueError(kind)


def variable(name: str, label: str, sql: str, multi: bool = False) -> dict[str, Any]:
    """A ClickHouse query variable (first column = value)."""
    sql = " ".join(sql.split())
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": CLICKHOUSE,
        "query": sql,
        "definition": sql,
        "refresh": 1,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }


MODEL_VARS = [
    variable("model", "Model", f"SELECT DISTINCT model_id FROM {DB}.drift_metrics ORDER BY model_id"),
    variable(
        "version",
        "Version",
        f"SELECT DISTINCT model_version FROM {DB}.drift_metrics WHERE model_id = {one('model')} "
        "ORDER BY model_version",
    ),
]


@dataclass(frozen=True)
class Built:
    json: dict[str, Any]
    columns: dict[tuple[int, str], tuple[str, ...]]  # (panel id, refId) -> columns of its ClickHouse query


def dashboard(
    uid: str, title: str, description: str, rows: list[list[Panel]], variables: list[dict[str, Any]]
) -> Built:
    """Panels laid out row by row (each row's widths add up to at most 24)."""
    panels: list[dict[str, Any]] = []
    columns: dict[tuple[int, str], tuple[str, ...]] = {}
    y, next_id = 0, 1
    for row in rows:
        x = 0
        for p in row:
            panel = p.to_json(next_id, x, y)
            panels.append(panel)
            for target, query in zip(panel["targets"], p.queries, strict=True):
                if query.sql:
                    columns[(next_id, target["refId"])] = query.columns
            next_id += 1
            x += p.w
        y += max(p.h for p in row)
    return Built(
        {
            "uid": uid,
            "title": title,
            "description": description,
            "tags": ["driftline"],
            "timezone": "utc",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "annotations": {"list": []},
            "links": [
                {
                    "type": "dashboards",
                    "tags": ["driftline"],
                    "asDropdown": False,
                    "includeVars": True,
                    "keepTime": True,
                    "title": "driftline",
                }
            ],
            "templating": {"list": variables},
            "panels": panels,
        },
        columns,
    )


# -- the dashboards -----------------------------------------------------------------------------


def drift_series(metric: str, features: str = f"has({many('feature')}, feature)") -> Query:
    """``features``: the condition that picks the features drawn."""
    return Query(
        f"""SELECT {bucket("window_end")} AS time, feature, max(value) AS value
            FROM {DB}.drift_metrics FINAL
            WHERE {MODEL} AND metric = '{metric}' AND {features} AND {in_range("window_end")}
            GROUP BY time, feature ORDER BY time, feature""",
        ("time", "feature", "value"),
    )


def group_series(metric: str, attributes: str = many("attribute")) -> Query:
    """A per-group fairness metric (``feature`` = ``attribute=group``) of the chosen attributes, one
    series per group named ``attribute=group``; the value of the last window ending in each interval."""
    return Query(
        f"""SELECT {bucket("window_end")} AS time, feature AS segment,
                   argMax(value, window_end) AS value
            FROM {DB}.drift_metrics FINAL
            WHERE {MODEL} AND metric = '{metric}'
              AND arrayExists(a -> startsWith(feature, concat(a, '=')), {attributes})
              AND {in_range("window_end")}
            GROUP BY time, segment ORDER BY time, segment""",
        ("time", "segment", "value"),
    )


def model_overview() -> Built:
    alerts_firing = Panel(
        "Alerts firing",
        "stat",
        [
            Query(
                f"""SELECT count() AS firing FROM (
                  SELECT fingerprint, argMax(state, at) AS state FROM {DB}.alerts
                  WHERE {MODEL} GROUP BY fingerprint)
                WHERE state = 'firing'""",
                ("firing",),
                TABLE,
            )
        ],
        w=6,
        h=4,
        thresholds=[(None, "green"), (1, "red")],
        description="Alerts of this model whose latest state is firing (driftline's own rules).",
    )
    events_total = Panel(
        "Events in range",
        "stat",
        [
            Query(
                f"""SELECT sum(n) AS events FROM {DB}.pane_sketches
                WHERE kind = 'events' AND {MODEL} AND {in_range("pane_start")}""",
                ("events",),
                TABLE,
            )
        ],
        w=6,
        h=4,
        unit="short",
    )
    drifting = Panel(
        "Features drifting (latest window)",
        "stat",
        [
            Query(
                f"""SELECT countIf(status = 'drift') AS drifting FROM (
                  SELECT feature, argMax(status, window_end) AS status FROM {DB}.drift_metrics FINAL
                  WHERE {MODEL} AND metric = 'psi' AND {in_range("window_end")} GROUP BY feature)""",
                ("drifting",),
                TABLE,
            )
        ],
        w=6,
        h=4,
        thresholds=[(None, "green"), (1, "orange")],
        description="Features whose verdict in the newest window is drift (PSI > 0.2 or KS D > 0.1).",
    )
    rejected = Panel(
        "Rejected events/s (all models)",
        "stat",
        [Query(expr='sum(rate(driftline_events_total{outcome="rejected"}[$__rate_interval]))')],
        w=6,
        h=4,
        unit="reqps",
        decimals=2,
        thresholds=[(None, "green"), (0.01, "orange")],
        description="Messages that broke the event contract and went to the dead-letter topic. A rejected "
        "message often cannot name its model, so this counts all models.",
    )
    events_rate = Panel(
        "Events/s (event time)",
        "timeseries",
        [
            Query(
                f"""SELECT {bucket("pane_start")} AS time,
                       sum(n) / greatest($__interval_s, max(pane_ms) / 1000) AS events_per_s
                FROM {DB}.pane_sketches
                WHERE kind = 'events' AND {MODEL} AND {in_range("pane_start")}
                GROUP BY time ORDER BY time""",
                ("time", "events_per_s"),
            )
        ],
        unit="reqps",
        min=0,
        description="Events stored per second of event time (late corrections included), from pane sketches.",
    )
    outcomes = Panel(
        "Ingest outcomes/s",
        "timeseries",
        [
            Query(
                expr='sum by (outcome) (rate(driftline_events_total{model=~"$model|"}[$__rate_interval]))',
                legend="{{outcome}}",
            )
        ],
        unit="reqps",
        min=0,
        description="accepted / rejected / late per second as the service counts them (Prometheus).",
    )
    latency = Panel(
        "Latency p50 / p95 / p99 (window)",
        "timeseries",
        [
            Query(
                f"""SELECT {bucket("window_end")} AS time,
                       maxIf(value, metric = 'latency_p50') AS p50,
                       maxIf(value, metric = 'latency_p95') AS p95,
                       maxIf(value, metric = 'latency_p99') AS p99
                FROM {DB}.drift_metrics FINAL
                WHERE {MODEL} AND feature = '' AND metric IN ('latency_p50', 'latency_p95', 'latency_p99')
                  AND {in_range("window_end")}
                GROUP BY time ORDER BY time""",
                ("time", "p50", "p95", "p99"),
            )
        ],
        unit="ms",
        min=0,
        description="Inference latency quantiles of each window (1% relative accuracy).",
    )
    transitions = Panel(
        "Alert transitions",
        "table",
        [
            Query(
                f"""SELECT at AS time, rule, feature, metric, state, severity, round(value, 4) AS value,
                       threshold, fromUnixTimestamp64Milli(window_end) AS window_time
                FROM {DB}.alerts
                WHERE {MODEL} AND $__timeFilter(at)
                ORDER BY at DESC LIMIT 200""",
                (
                    "time",
                    "rule",
                    "feature",
                    "metric",
                    "state",
                    "severity",
                    "value",
                    "threshold",
                    "window_time",
                ),
                TABLE,
            )
        ],
    )
    heatmap = Panel(
        "PSI by feature",
        "heatmap",
        [
            drift_series(
                "psi",
                features=f"""feature IN (SELECT DISTINCT feature
            FROM {DB}.drift_metrics WHERE {MODEL} AND metric = 'psi')""",
            )
        ],
        w=24,
        h=12,
        label="feature",
        decimals=2,
        description="PSI of every feature over time (max per interval). Above 0.2 is drift by default.",
    )
    return dashboard(
        "driftline-model-overview",
        "driftline / Model overview",
        "Traffic, latency, alerts and drift of one model.",
        [
            [alerts_firing, events_total, drifting, rejected],
            [events_rate, outcomes],
            [latency, transitions],
            [heatmap],
        ],
        MODEL_VARS,
    )


def feature_drift() -> Built:
    feature_var = variable(
        "feature",
        "Feature",
        f"""SELECT DISTINCT feature FROM {DB}.drift_metrics
            WHERE {MODEL} AND metric = 'psi'
            ORDER BY feature""",
        multi=True,
    )

    def drift(title: str, metric: str, threshold: float, description: str, unit: str = "") -> Panel:
        return Panel(
            title,
            "timeseries",
            [drift_series(metric)],
            label="feature",
            unit=unit,
            min=0,
            thresholds=[(None, "green"), (threshold, "red")],
            threshold_line=True,
            description=description,
        )

    latest = Panel(
        "Latest window",
        "table",
        [
            Query(
                f"""SELECT feature,
                       round(maxIfOrNull(value, metric = 'psi'), 4) AS psi,
                       round(maxIfOrNull(value, metric = 'ks'), 4) AS ks,
                       round(maxIfOrNull(value, metric = 'js'), 4) AS js,
                       round(maxIfOrNull(value, metric = 'null_rate'), 4) AS null_rate,
                       anyIf(status, metric = 'psi') AS status,
                       fromUnixTimestamp64Milli(max(window_end)) AS as_of
                FROM {DB}.drift_metrics FINAL
                WHERE {MODEL} AND has({many("feature")}, feature)
                  AND window_end = (SELECT max(window_end) FROM {DB}.drift_metrics
                                    WHERE {MODEL} AND metric = 'psi' AND {in_range("window_end")})
                GROUP BY feature ORDER BY psi DESC""",
                ("feature", "psi", "ks", "js", "null_rate", "status", "as_of"),
                TABLE,
            )
        ],
        w=24,
        h=10,
    )
    return dashboard(
        "driftline-feature-drift",
        "driftline / Feature drift",
        "Drift statistics per feature and window against the model's reference.",
        [
            [
                drift(
                    "PSI",
                    "psi",
                    0.2,
                    "Population stability index over the reference deciles; > 0.2 is drift.",
                ),
                drift("Kolmogorov–Smirnov D", "ks", 0.1, "KS statistic (numeric features); > 0.1 is drift."),
            ],
            [
                drift(
                    "Jensen–Shannon distance",
                    "js",
                    0.1,
                    "JS distance (base 2) over PSI bins or categories; "
                    "the 0.1 line is a guide, no default rule.",
                ),
                drift(
                    "Null rate",
                    "null_rate",
                    0.05,
                    "Share of missing values; the 5% line is a guide.",
                    unit="percentunit",
                ),
            ],
            [latest],
        ],
        [*MODEL_VARS, feature_var],
    )


def fairness() -> Built:
    attribute_var = variable(
        "attribute",
        "Segment attribute",
        f"""SELECT DISTINCT feature FROM {DB}.drift_metrics
            WHERE {MODEL} AND metric = 'disparate_impact'
            ORDER BY feature""",
        multi=True,
    )

    def series(
        title: str, metric: str, thresholds: list[tuple[float | None, str]], description: str
    ) -> Panel:
        return Panel(
            title,
            "timeseries",
            [drift_series(metric, f"has({many('attribute')}, feature)")],
            label="feature",
            thresholds=thresholds,
            threshold_line=True,
            min=0,
            description=description,
        )

    latest = Panel(
        "Latest window per attribute",
        "table",
        [
            Query(
                f"""SELECT feature AS attribute,
                       round(maxIfOrNull(value, metric = 'disparate_impact'), 3) AS disparate_impact,
                       round(maxIfOrNull(value, metric = 'demographic_parity_difference'), 3)
                         AS parity_difference,
                       round(maxIfOrNull(value, metric = 'equal_opportunity_difference'), 3)
                         AS opportunity_difference,
                       max(n_cur) AS events,
                       fromUnixTimestamp64Milli(max(window_end)) AS as_of
                FROM {DB}.drift_metrics FINAL
                WHERE {MODEL} AND has({many("attribute")}, feature)
                  AND metric IN ('disparate_impact', 'demographic_parity_difference',
                                 'equal_opportunity_difference')
                  AND window_end = (SELECT max(window_end) FROM {DB}.drift_metrics
                                    WHERE {MODEL} AND metric = 'disparate_impact'
                                      AND {in_range("window_end")})
                GROUP BY feature ORDER BY disparate_impact""",
                (
                    "attribute",
                    "disparate_impact",
                    "parity_difference",
                    "opportunity_difference",
                    "events",
                    "as_of",
                ),
                TABLE,
            )
        ],
        w=12,
        h=8,
    )

    def by_group(title: str, metric: str, description: str) -> Panel:
        return Panel(
            title,
            "timeseries",
            [group_series(metric)],
            label="segment",
            unit="percentunit",
            min=0,
            description=description,
        )

    return dashboard(
        "driftline-fairness",
        "driftline / Fairness",
        "Group fairness of positive predictions per segment attribute (groups below min support excluded).",
        [
            [
                series(
                    "Disparate impact (min / max positive rate)",
                    "disparate_impact",
                    [(None, "red"), (0.8, "green")],
                    "Four-fifths rule: below the 0.8 line one group's positive rate is under 80% of "
                    "another's.",
                ),
                series(
                    "Demographic parity difference",
                    "demographic_parity_difference",
                    [(None, "green"), (0.1, "orange")],
                    "max − min positive rate; the 0.1 line is a guide.",
                ),
            ],
            [
                series(
                    "Equal opportunity difference (TPR gap)",
                    "equal_opportunity_difference",
                    [(None, "green"), (0.1, "orange")],
                    "max − min true positive rate among labelled events; the 0.1 line is a guide.",
                ),
                latest,
            ],
            [
                by_group(
                    "Positive rate by group",
                    "positive_rate",
                    "Share of positive predictions per group (attribute=group) of the chosen attributes. "
                    "Groups below the min support are drawn too (noisy) but left out of the gaps above.",
                ),
                by_group(
                    "TPR by group",
                    "tpr",
                    "True positive rate per group among labelled events (no point while a group has no "
                    "label positives). Groups below the min support are drawn too.",
                ),
            ],
        ],
        [*MODEL_VARS, attribute_var],
    )


def pipeline_health() -> Built:
    def prom(title: str, *queries: Query, unit: str = "", w: int = 12, **kw: Any) -> Panel:
        return Panel(title, "timeseries", list(queries), unit=unit, w=w, min=0, **kw)

    def q(expr: str, legend: str = "") -> Query:
        return Query(expr=expr, legend=legend)

    def p(quantile: float, metric: str, legend: str) -> Query:
        return q(
            f"histogram_quantile({quantile}, sum by (le) (rate({metric}_bucket[$__rate_interval])))", legend
        )

    up = Panel(
        "driftline up",
        "stat",
        [q('up{job="driftline"}', "{{instance}}")],
        w=6,
        h=4,
        thresholds=[(None, "red"), (1, "green")],
    )
    firing = Panel(
        "Alerts firing",
        "stat",
        [q("sum(driftline_alerts_firing)")],
        w=6,
        h=4,
        thresholds=[(None, "green"), (1, "red")],
    )
    lag_total = Panel(
        "Consumer lag (messages)",
        "stat",
        [q("sum(driftline_consumer_lag_messages)")],
        w=6,
        h=4,
        thresholds=[(None, "green"), (10_000, "orange")],
        unit="short",
    )
    failed = Panel(
        "Notification failures (range)",
        "stat",
        [q('sum(increase(driftline_notifications_total{outcome="failed"}[$__range]))')],
        w=6,
        h=4,
        thresholds=[(None, "green"), (1, "red")],
        decimals=0,
    )
    attempts = Panel(
        "Notification attempts not sent (from the store)",
        "table",
        [
            Query(
                f"""SELECT at AS time, receiver, kind, attempt, outcome, http_status, detail
                FROM {DB}.notifications
                WHERE outcome != 'sent' AND $__timeFilter(at)
                ORDER BY at DESC LIMIT 200""",
                ("time", "receiver", "kind", "attempt", "outcome", "http_status", "detail"),
                TABLE,
            )
        ],
        w=24,
        h=7,
        description="Retries and failures recorded by the outbox (durable, survives restarts).",
    )
    return dashboard(
        "driftline-pipeline-health",
        "driftline / Pipeline health",
        "The driftline service itself: Kafka lag, throughput, store writes, notifications (Prometheus).",
        [
            [up, firing, lag_total, failed],
            [
                prom(
                    "Consumer lag by partition",
                    q(
                        "sum by (topic, partition) (driftline_consumer_lag_messages)",
                        "{{topic}}/{{partition}}",
                    ),
                    unit="short",
                ),
                prom(
                    "Throughput by outcome",
                    q("sum by (outcome) (rate(driftline_events_total[$__rate_interval]))", "{{outcome}}"),
                    unit="reqps",
                ),
            ],
            [
                prom(
                    "Store write latency",
                    p(0.5, "driftline_store_write_seconds", "p50"),
                    p(0.95, "driftline_store_write_seconds", "p95"),
                    p(0.99, "driftline_store_write_seconds", "p99"),
                    unit="s",
                ),
                prom(
                    "Store errors/s by operation",
                    q(
                        "sum by (operation) (rate(driftline_store_errors_total[$__rate_interval]))",
                        "{{operation}}",
                    ),
                    unit="reqps",
                ),
            ],
            [
                prom(
                    "Notifications/s by receiver and outcome",
                    q(
                        "sum by (receiver, outcome) (rate(driftline_notifications_total[$__rate_interval]))",
                        "{{receiver}} {{outcome}}",
                    ),
                    unit="reqps",
                ),
                prom(
                    "Decode and fold p99 per batch",
                    p(0.99, "driftline_decode_seconds", "decode"),
                    p(0.99, "driftline_fold_seconds", "fold"),
                    unit="s",
                ),
            ],
            [
                prom(
                    "Panes flushed/s and windows evaluated/s",
                    q("sum(rate(driftline_panes_flushed_total[$__rate_interval]))", "panes"),
                    q(
                        "sum by (model) (rate(driftline_windows_evaluated_total[$__rate_interval]))",
                        "windows {{model}}",
                    ),
                    unit="reqps",
                ),
                prom(
                    "API requests/s by status",
                    q(
                        "sum by (status) (rate(driftline_http_requests_total[$__rate_interval]))",
                        "{{status}}",
                    ),
                    unit="reqps",
                ),
            ],
            [attempts],
        ],
        [],
    )


DASHBOARDS = {
    "model-overview": model_overview,
    "feature-drift": feature_drift,
    "fairness": fairness,
    "pipeline-health": pipeline_health,
}


def build() -> dict[str, Built]:
    """File stem -> dashboard."""
    return {name: make() for name, make in DASHBOARDS.items()}


def render(dash: dict[str, Any]) -> str:
    return json.dumps(dash, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if the checked-in JSON differs")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, built in build().items():
        path = OUT / f"{name}.json"
        text = render(built.json)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale (run python -m dashboards.build):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
