"""Generate the Grafana dashboards (JSON) from this file; the JSON is checked in.

    python -m dashboards.build            # rewrite dashboards/grafana/dashboards/*.json
    python -m dashboards.build --check    # exit 1 if the checked-in JSON is stale

This file is the layout: rows of panels, their sizes, units, thresholds, links and variables. What
each panel asks (the ClickHouse SQL and PromQL, and the columns a query returns) is in
``dashboards/queries.py``, referred to by name.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboards import queries as q
from dashboards.queries import TIME_SERIES, PromQL, Query, Sql

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "grafana" / "dashboards"
PLUGIN_VERSION = "4.11.0"  # grafana-clickhouse-datasource, pinned in docker-compose.yml
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "driftline-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "driftline-prometheus"}
DATASOURCE = {Sql: CLICKHOUSE, PromQL: PROMETHEUS}

Thresholds = list[tuple[float | None, str]]  # (from value, color)


# -- panels -------------------------------------------------------------------------------------


def target(query: Query, ref_id: str) -> dict[str, Any]:
    if isinstance(query, PromQL):
        return {
            "datasource": PROMETHEUS,
            "refId": ref_id,
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": True,
            "editorMode": "code",
        }
    return {
        "datasource": CLICKHOUSE,
        "refId": ref_id,
        "editorType": "sql",
        "format": query.format,
        "queryType": "timeseries" if query.format == TIME_SERIES else "table",
        "rawSql": " ".join(query.text.split()),
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
    thresholds: Thresholds = field(default_factory=list)
    threshold_line: bool = False
    label: str = ""  # long-format label column: series named by it
    decimals: int | None = None
    min: float | None = None
    max: float | None = None

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {"custom": {}}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
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
            "datasource": datasource(self.queries),
            "targets": [target(query, chr(ord("A") + i)) for i, query in enumerate(self.queries)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": default_options(self.type),
        }
        if self.description:
            panel["description"] = self.description
        return panel


@dataclass(frozen=True)
class Row:
    """A row header across the grid: the panels below it, up to the next row, belong to it. Never
    collapsed, so every panel stays in the dashboard's flat ``panels`` list (a collapsed row keeps
    its panels inside itself)."""

    title: str

    def to_json(self, panel_id: int, y: int) -> dict[str, Any]:
        return {
            "id": panel_id,
            "type": "row",
            "title": self.title,
            "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": [],
        }


def datasource(queries: list[Query]) -> dict[str, str]:
    kinds = {type(query) for query in queries}
    if len(kinds) != 1:
        raise ValueError("a panel's queries must share one datasource")
    return DATASOURCE[kinds.pop()]


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
    variable("model", "Model", q.MODEL_VALUES),
    variable("version", "Version", q.VERSION_VALUES),
]


@dataclass(frozen=True)
class Built:
    json: dict[str, Any]
    columns: dict[tuple[int, str], tuple[str, ...]]  # (panel id, refId) -> columns of its ClickHouse query


def dashboard(
    uid: str,
    title: str,
    description: str,
    rows: list[list[Panel] | Row],
    variables: list[dict[str, Any]],
) -> Built:
    """Panels laid out row by row (each row's widths add up to at most 24); a :class:`Row` is a
    header over the rows of panels after it."""
    panels: list[dict[str, Any]] = []
    columns: dict[tuple[int, str], tuple[str, ...]] = {}
    y, next_id = 0, 1
    for row in rows:
        if isinstance(row, Row):
            panels.append(row.to_json(next_id, y))
            next_id += 1
            y += 1
            continue
        x = 0
        for p in row:
            panel = p.to_json(next_id, x, y)
            panels.append(panel)
            for t, query in zip(panel["targets"], p.queries, strict=True):
                if isinstance(query, Sql):
                    columns[(next_id, t["refId"])] = query.columns
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


def stat(title: str, query: Query, **kw: Any) -> Panel:
    """One of the four numbers atop a dashboard."""
    return Panel(title, "stat", [query], w=6, h=4, **kw)


def timeseries(title: str, *queries: Query, **kw: Any) -> Panel:
    """Every series drawn is a count, rate, statistic or latency: the axis starts at 0."""
    return Panel(title, "timeseries", list(queries), min=0, **kw)


def with_threshold_line(
    title: str, query: Sql, thresholds: Thresholds, description: str, unit: str = ""
) -> Panel:
    """A statistic per feature (or attribute) against a threshold drawn as a line."""
    return timeseries(
        title,
        query,
        label="feature",
        unit=unit,
        thresholds=thresholds,
        threshold_line=True,
        description=description,
    )


def table(title: str, query: Sql, **kw: Any) -> Panel:
    return Panel(title, "table", [query], **kw)


def above(value: float, color: str) -> Thresholds:
    """Green, ``color`` from ``value`` up."""
    return [(None, "green"), (value, color)]


def below(value: float) -> Thresholds:
    """Red, green from ``value`` up."""
    return [(None, "red"), (value, "green")]


# -- the dashboards -----------------------------------------------------------------------------


def model_overview() -> Built:
    return dashboard(
        "driftline-model-overview",
        "driftline / Model overview",
        "Traffic, latency, alerts, drift and quality of one model.",
        [
            [
                stat(
                    "Alerts firing",
                    q.ALERTS_FIRING,
                    thresholds=above(1, "red"),
                    description="Alerts of this model whose latest state is firing (driftline's own rules).",
                ),
                stat("Events in range", q.EVENTS_IN_RANGE, unit="short"),
                stat(
                    "Features drifting (latest window)",
                    q.FEATURES_DRIFTING,
                    thresholds=above(1, "orange"),
                    description="Features whose verdict in the newest window is drift "
                    "(PSI > 0.2 or KS D > 0.1).",
                ),
                stat(
                    "Rejected events/s (all models)",
                    q.REJECTED_RATE,
                    unit="reqps",
                    decimals=2,
                    thresholds=above(0.01, "orange"),
                    description="Messages that broke the event contract and went to the dead-letter topic. "
                    "A rejected message often cannot name its model, so this counts all models.",
                ),
            ],
            [
                timeseries(
                    "Events/s (event time)",
                    q.EVENTS_RATE,
                    unit="reqps",
                    description="Events stored per second of event time (late corrections included), "
                    "from pane sketches.",
                ),
                timeseries(
                    "Ingest outcomes/s",
                    q.INGEST_OUTCOMES,
                    unit="reqps",
                    description="accepted / rejected / late per second as the service counts them "
                    "(Prometheus).",
                ),
            ],
            [
                timeseries(
                    "Latency p50 / p95 / p99 (window)",
                    q.LATENCY_QUANTILES,
                    unit="ms",
                    description="Inference latency quantiles of each window (1% relative accuracy).",
                ),
                table("Alert transitions", q.ALERT_TRANSITIONS),
            ],
            [
                Panel(
                    "PSI by feature",
                    "heatmap",
                    [q.PSI_BY_FEATURE],
                    w=24,
                    h=12,
                    label="feature",
                    decimals=2,
                    description="PSI of every feature over time (max per interval). "
                    "Above 0.2 is drift by default.",
                )
            ],
            *model_quality(),
        ],
        MODEL_VARS,
    )


def model_quality() -> list[list[Panel] | Row]:
    """The overview's "Model quality" row: the model's outputs and how good they are, window by
    window (model-level metrics, stored with feature ""), and the per-slice view."""
    return [
        Row("Model quality"),
        [
            timeseries(
                "Prediction and label drift (PSI)",
                q.OUTPUT_PSI,
                label="series",
                decimals=3,
                thresholds=above(0.2, "red"),
                threshold_line=True,
                description="PSI of the model's predictions (prediction_psi) and of the labels "
                "(label_psi) against the reference's, max per interval; above 0.2 is drift, as for "
                "features. KS, JS and Wasserstein are stored too (prediction_ks, ...) for alert rules.",
            ),
            timeseries(
                "Classifier quality (labelled events)",
                q.CLASSIFIER_QUALITY,
                label="series",
                decimals=3,
                max=1,
                description="Accuracy, F1 and ROC AUC (binary; macro F1 for a multiclass model) of "
                "each window's labelled events, the last window ending in each interval. Empty "
                "while the reference has no labels or no event of a window has one.",
            ),
        ],
        [
            timeseries(
                "Labelled share and positive rates",
                q.LABELLED_SHARE,
                unit="percentunit",
                description="labelled_share: the share of each window's events that carry a "
                "label (n_labelled / events): the quality panels speak for that share only. "
                "label_positive_rate and predicted_positive_rate: positives among the labelled "
                "events' labels and predictions (binary).",
            ),
            timeseries(
                "Regressor error (MAE / RMSE)",
                q.REGRESSOR_ERROR,
                label="series",
                description="Mean absolute and root mean squared error (prediction − label, in the "
                "label's unit) of each window's labelled events, for a regression model; the last "
                "window ending in each interval. Empty for classifiers.",
            ),
        ],
        [
            table(
                "Per slice (latest window)",
                q.SLICES_LATEST,
                w=24,
                h=10,
                description="One row per slice (a value of a segment attribute) in the newest "
                "window: its positive rate and TPR (true positive rate among labelled events) and "
                "the PSI of its attribute's mix against the reference (the share of each slice "
                "drifting). Slices below the fairness min support are listed too (noisy).",
            )
        ],
    ]


def feature_drift() -> Built:
    return dashboard(
        "driftline-feature-drift",
        "driftline / Feature drift",
        "Drift statistics per feature and window against the model's reference.",
        [
            [
                with_threshold_line(
                    "PSI",
                    q.drift_series("psi"),
                    above(0.2, "red"),
                    "Population stability index over the reference deciles; > 0.2 is drift.",
                ),
                with_threshold_line(
                    "Kolmogorov–Smirnov D",
                    q.drift_series("ks"),
                    above(0.1, "red"),
                    "KS statistic (numeric features); > 0.1 is drift.",
                ),
            ],
            [
                with_threshold_line(
                    "Jensen–Shannon distance",
                    q.drift_series("js"),
                    above(0.1, "red"),
                    "JS distance (base 2) over PSI bins or categories; "
                    "the 0.1 line is a guide, no default rule.",
                ),
                with_threshold_line(
                    "Null rate",
                    q.drift_series("null_rate"),
                    above(0.05, "red"),
                    "Share of missing values; the 5% line is a guide.",
                    unit="percentunit",
                ),
            ],
            [table("Latest window", q.FEATURES_LATEST, w=24, h=10)],
        ],
        [*MODEL_VARS, variable("feature", "Feature", q.FEATURE_VALUES, multi=True)],
    )


def fairness() -> Built:
    return dashboard(
        "driftline-fairness",
        "driftline / Fairness",
        "Group fairness of positive predictions per segment attribute (groups below min support excluded).",
        [
            [
                with_threshold_line(
                    "Disparate impact (min / max positive rate)",
                    q.attribute_series("disparate_impact"),
                    below(0.8),
                    "Four-fifths rule: below the 0.8 line one group's positive rate is under 80% of "
                    "another's.",
                ),
                with_threshold_line(
                    "Demographic parity difference",
                    q.attribute_series("demographic_parity_difference"),
                    above(0.1, "orange"),
                    "max − min positive rate; the 0.1 line is a guide.",
                ),
            ],
            [
                with_threshold_line(
                    "Equal opportunity difference (TPR gap)",
                    q.attribute_series("equal_opportunity_difference"),
                    above(0.1, "orange"),
                    "max − min true positive rate among labelled events; the 0.1 line is a guide.",
                ),
                table("Latest window per attribute", q.ATTRIBUTES_LATEST),
            ],
            [
                timeseries(
                    "Positive rate by group",
                    q.group_series("positive_rate"),
                    label="segment",
                    unit="percentunit",
                    description="Share of positive predictions per group (attribute=group) of the chosen "
                    "attributes. Groups below the min support are drawn too (noisy) but left out of the "
                    "gaps above.",
                ),
                timeseries(
                    "TPR by group",
                    q.group_series("tpr"),
                    label="segment",
                    unit="percentunit",
                    description="True positive rate per group among labelled events (no point while a "
                    "group has no label positives). Groups below the min support are drawn too.",
                ),
            ],
        ],
        [*MODEL_VARS, variable("attribute", "Segment attribute", q.ATTRIBUTE_VALUES, multi=True)],
    )


def pipeline_health() -> Built:
    return dashboard(
        "driftline-pipeline-health",
        "driftline / Pipeline health",
        "The driftline service itself: Kafka lag, throughput, store writes, notifications (Prometheus).",
        [
            [
                stat("driftline up", q.UP, thresholds=below(1)),
                stat("Alerts firing", q.SERVICE_ALERTS_FIRING, thresholds=above(1, "red")),
                stat(
                    "Consumer lag (messages)",
                    q.CONSUMER_LAG,
                    thresholds=above(10_000, "orange"),
                    unit="short",
                ),
                stat(
                    "Notification failures (range)",
                    q.NOTIFICATION_FAILURES,
                    thresholds=above(1, "red"),
                    decimals=0,
                ),
            ],
            [
                timeseries("Consumer lag by partition", q.LAG_BY_PARTITION, unit="short"),
                timeseries("Throughput by outcome", q.THROUGHPUT_BY_OUTCOME, unit="reqps"),
            ],
            [
                timeseries("Store write latency", *q.STORE_WRITE_LATENCY, unit="s"),
                timeseries("Store errors/s by operation", q.STORE_ERRORS, unit="reqps"),
            ],
            [
                timeseries("Notifications/s by receiver and outcome", q.NOTIFICATIONS, unit="reqps"),
                timeseries("Decode and fold p99 per batch", *q.DECODE_FOLD_P99, unit="s"),
            ],
            [
                timeseries(
                    "Panes flushed/s and windows evaluated/s",
                    q.PANES_FLUSHED,
                    q.WINDOWS_EVALUATED,
                    unit="reqps",
                ),
                timeseries("API requests/s by status", q.HTTP_REQUESTS, unit="reqps"),
            ],
            [
                table(
                    "Notification attempts not sent (from the store)",
                    q.NOTIFICATION_ATTEMPTS,
                    w=24,
                    h=7,
                    description="Retries and failures recorded by the outbox (durable, survives restarts).",
                )
            ],
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
