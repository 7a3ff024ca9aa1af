"""What the dashboard panels ask: every ClickHouse SQL and PromQL expression, by dashboard and row.

``dashboards/build.py`` places them on the grid; this module knows nothing of Grafana's layout.

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

Each SQL query declares the columns it returns; ``tests/test_dashboards.py`` runs every query
against a chDB store filled by ``dashboards/sample.py`` and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

DB = "driftline"
TIME_SERIES, TABLE = 0, 1  # the plugin's `format` values


@dataclass(frozen=True)
class Sql:
    """A ClickHouse query, the columns it returns and how the plugin reads them."""

    text: str
    columns: tuple[str, ...]
    format: int = TIME_SERIES


@dataclass(frozen=True)
class PromQL:
    """A Prometheus expression; ``legend`` names its series from their labels."""

    expr: str
    legend: str = "__auto"  # Grafana's own naming


Query = Sql | PromQL


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


def drift_series(metric: str, features: str = f"has({many('feature')}, feature)") -> Sql:
    """A per-feature statistic, one series per feature (max per interval); ``features``: the
    condition that picks the features drawn."""
    return Sql(
        f"""SELECT {bucket("window_end")} AS time, feature, max(value) AS value
            FROM {DB}.drift_metrics FINAL
            WHERE {MODEL} AND metric = '{metric}' AND {features} AND {in_range("window_end")}
            GROUP BY time, feature ORDER BY time, feature""",
        ("time", "feature", "value"),
    )


# -- variables (first column = value) -----------------------------------------------------------

MODEL_VALUES = f"SELECT DISTINCT model_id FROM {DB}.drift_metrics ORDER BY model_id"
VERSION_VALUES = (
    f"SELECT DISTINCT model_version FROM {DB}.drift_metrics WHERE model_id = {one('model')} "
    "ORDER BY model_version"
)
FEATURE_VALUES = f"""SELECT DISTINCT feature FROM {DB}.drift_metrics
            WHERE {MODEL} AND metric = 'psi'
            ORDER BY feature"""
ATTRIBUTE_VALUES = f"""SELECT DISTINCT feature FROM {DB}.drift_metrics
            WHERE {MODEL} AND metric = 'disparate_impact'
            ORDER BY feature"""

# -- Model overview -----------------------------------------------------------------------------

# Alerts of this model whose latest state is firing.
ALERTS_FIRING = Sql(
    f"""SELECT count() AS firing FROM (
                  SELECT fingerprint, argMax(state, at) AS state FROM {DB}.alerts
                  WHERE {MODEL} GROUP BY fingerprint)
                WHERE state = 'firing'""",
    ("firing",),
    TABLE,
)
EVENTS_IN_RANGE = Sql(
    f"""SELECT sum(n) AS events FROM {DB}.pane_sketches
                WHERE kind = 'events' AND {MODEL} AND {in_range("pane_start")}""",
    ("events",),
    TABLE,
)
# Features whose verdict (the status stored with their PSI) in their newest window is drift.
FEATURES_DRIFTING = Sql(
    f"""SELECT countIf(status = 'drift') AS drifting FROM (
                  SELECT feature, argMax(status, window_end) AS status FROM {DB}.drift_metrics FINAL
                  WHERE {MODEL} AND metric = 'psi' AND {in_range("window_end")} GROUP BY feature)""",
    ("drifting",),
    TABLE,
)
REJECTED_RATE = PromQL('sum(rate(driftline_events_total{outcome="rejected"}[$__rate_interval]))')

# Events per second of event time; a bucket holding a pane longer than the interval divides by the pane.
EVENTS_RATE = Sql(
    f"""SELECT {bucket("pane_start")} AS time,
                       sum(n) / greatest($__interval_s, max(pane_ms) / 1000) AS events_per_s
                FROM {DB}.pane_sketches
                WHERE kind = 'events' AND {MODEL} AND {in_range("pane_start")}
                GROUP BY time ORDER BY time""",
    ("time", "events_per_s"),
)
# Rejected and late events are counted with an empty `model` (their ids are unbounded): kept.
INGEST_OUTCOMES = PromQL(
    'sum by (outcome) (rate(driftline_events_total{model=~"$model|"}[$__rate_interval]))', "{{outcome}}"
)

LATENCY_QUANTILES = Sql(
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
ALERT_TRANSITIONS = Sql(
    f"""SELECT at AS time, rule, feature, metric, state, severity, round(value, 4) AS value,
                       threshold, fromUnixTimestamp64Milli(window_end) AS window_time
                FROM {DB}.alerts
                WHERE {MODEL} AND $__timeFilter(at)
                ORDER BY at DESC LIMIT 200""",
    ("time", "rule", "feature", "metric", "state", "severity", "value", "threshold", "window_time"),
    TABLE,
)

# Every feature of the model, not only those of a variable (the overview has none).
PSI_BY_FEATURE = drift_series(
    "psi",
    features=f"""feature IN (SELECT DISTINCT feature
            FROM {DB}.drift_metrics WHERE {MODEL} AND metric = 'psi')""",
)

# -- Model overview: model quality (model-level metrics are stored with feature "") -------------


def model_series(metrics: tuple[str, ...], value: str) -> Sql:
    """Model-level metrics, one series per metric (named by ``series``, the metric's name as a
    plain String); ``value``: what each interval shows of its windows (``max(value)``: the worst;
    ``argMax(value, window_end)``: the last window ending in it)."""
    names = ", ".join(f"'{m}'" for m in metrics)
    return Sql(
        f"""SELECT {bucket("window_end")} AS time, CAST(metric AS String) AS series, {value} AS value
            FROM {DB}.drift_metrics FINAL
            WHERE {MODEL} AND feature = '' AND metric IN ({names}) AND {in_range("window_end")}
            GROUP BY time, series ORDER BY time, series""",
        ("time", "series", "value"),
    )


# The PSI of the model's score (or class) and of its labels against the reference's; max per interval.
OUTPUT_PSI = model_series(("prediction_psi", "label_psi"), "max(value)")
# Quality of the labelled events of each window: binary (accuracy, f1, roc_auc) and multiclass
# (accuracy, macro_f1); the last window ending in each interval.
CLASSIFIER_QUALITY = model_series(("accuracy", "f1", "roc_auc", "macro_f1"), "argMax(value, window_end)")
REGRESSOR_ERROR = model_series(("mae", "rmse"), "argMax(value, window_end)")

# Per window: the share of its events that carry a label (n_labelled / events; null without
# events), the labels' and the predictions' positive rates (binary); the last window per interval.
LABELLED_SHARE = Sql(
    f"""SELECT {bucket("window_end")} AS time,
                       argMax(labelled_share, window_end) AS labelled_share,
                       argMax(label_positive_rate, window_end) AS label_positive_rate,
                       argMax(predicted_positive_rate, window_end) AS predicted_positive_rate
                FROM (
                  SELECT window_end,
                         sumIf(value, metric = 'n_labelled') / nullIf(maxIf(value, metric = 'events'), 0)
                           AS labelled_share,
                         maxIfOrNull(value, metric = 'label_positive_rate') AS label_positive_rate,
                         maxIfOrNull(value, metric = 'predicted_positive_rate') AS predicted_positive_rate
                  FROM {DB}.drift_metrics FINAL
                  WHERE {MODEL} AND feature = ''
                    AND metric IN ('n_labelled', 'events', 'label_positive_rate', 'predicted_positive_rate')
                    AND {in_range("window_end")}
                  GROUP BY window_end)
                GROUP BY time ORDER BY time""",
    ("time", "labelled_share", "label_positive_rate", "predicted_positive_rate"),
)

# The per-slice view (slice = a value of a segment attribute) of the newest window with groups:
# each group's positive rate and TPR (the fairness rows, feature "attribute=group") and the PSI of
# its attribute's mix (null when not computed: the Nullable column's default in the LEFT JOIN).
SLICES_LATEST = Sql(
    f"""WITH (SELECT max(window_end) FROM {DB}.drift_metrics
                      WHERE {MODEL} AND metric = 'positive_rate' AND {in_range("window_end")}) AS latest
                SELECT g.attribute AS attribute, g.slice AS slice, g.positive_rate AS positive_rate,
                       g.tpr AS tpr, m.mix_psi AS attribute_psi,
                       fromUnixTimestamp64Milli(latest) AS as_of
                FROM (
                  SELECT substring(feature, 1, position(feature, '=') - 1) AS attribute,
                         substring(feature, position(feature, '=') + 1) AS slice,
                         round(maxIfOrNull(value, metric = 'positive_rate'), 4) AS positive_rate,
                         round(maxIfOrNull(value, metric = 'tpr'), 4) AS tpr
                  FROM {DB}.drift_metrics FINAL
                  WHERE {MODEL} AND metric IN ('positive_rate', 'tpr') AND position(feature, '=') > 0
                    AND window_end = latest
                  GROUP BY feature) AS g
                LEFT JOIN (
                  SELECT feature AS attribute, toNullable(round(max(value), 4)) AS mix_psi
                  FROM {DB}.drift_metrics FINAL
                  WHERE {MODEL} AND metric = 'psi' AND window_end = latest
                  GROUP BY feature) AS m ON g.attribute = m.attribute
                ORDER BY attribute, slice""",
    ("attribute", "slice", "positive_rate", "tpr", "attribute_psi", "as_of"),
    TABLE,
)

# -- Feature drift (each statistic over time: drift_series(metric)) -----------------------------

# Every statistic of the chosen features in the newest window of the range (null: not computed).
FEATURES_LATEST = Sql(
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

# -- Fairness -----------------------------------------------------------------------------------


def attribute_series(metric: str) -> Sql:
    """A fairness gap per chosen attribute (stored with the attribute as ``feature``)."""
    return drift_series(metric, f"has({many('attribute')}, feature)")


# The gaps of the chosen attributes in the newest window of the range.
ATTRIBUTES_LATEST = Sql(
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
    ("attribute", "disparate_impact", "parity_difference", "opportunity_difference", "events", "as_of"),
    TABLE,
)


def group_series(metric: str) -> Sql:
    """A per-group fairness metric (``feature`` = ``attribute=group``) of the chosen attributes, one
    series per group named ``attribute=group``; the value of the last window ending in each interval."""
    return Sql(
        f"""SELECT {bucket("window_end")} AS time, feature AS segment,
                   argMax(value, window_end) AS value
            FROM {DB}.drift_metrics FINAL
            WHERE {MODEL} AND metric = '{metric}'
              AND arrayExists(a -> startsWith(feature, concat(a, '=')), {many("attribute")})
              AND {in_range("window_end")}
            GROUP BY time, segment ORDER BY time, segment""",
        ("time", "segment", "value"),
    )


# -- Pipeline health (the service's own metrics) ------------------------------------------------


def quantile(level: float, histogram: str, legend: str) -> PromQL:
    """The ``level`` quantile of a histogram over all its series."""
    return PromQL(
        f"histogram_quantile({level}, sum by (le) (rate({histogram}_bucket[$__rate_interval])))", legend
    )


UP = PromQL('up{job="driftline"}', "{{instance}}")
SERVICE_ALERTS_FIRING = PromQL("sum(driftline_alerts_firing)")
CONSUMER_LAG = PromQL("sum(driftline_consumer_lag_messages)")
NOTIFICATION_FAILURES = PromQL('sum(increase(driftline_notifications_total{outcome="failed"}[$__range]))')

LAG_BY_PARTITION = PromQL(
    "sum by (topic, partition) (driftline_consumer_lag_messages)", "{{topic}}/{{partition}}"
)
THROUGHPUT_BY_OUTCOME = PromQL(
    "sum by (outcome) (rate(driftline_events_total[$__rate_interval]))", "{{outcome}}"
)

STORE_WRITE_LATENCY = (
    quantile(0.5, "driftline_store_write_seconds", "p50"),
    quantile(0.95, "driftline_store_write_seconds", "p95"),
    quantile(0.99, "driftline_store_write_seconds", "p99"),
)
STORE_ERRORS = PromQL(
    "sum by (operation) (rate(driftline_store_errors_total[$__rate_interval]))", "{{operation}}"
)

NOTIFICATIONS = PromQL(
    "sum by (receiver, outcome) (rate(driftline_notifications_total[$__rate_interval]))",
    "{{receiver}} {{outcome}}",
)
DECODE_FOLD_P99 = (
    quantile(0.99, "driftline_decode_seconds", "decode"),
    quantile(0.99, "driftline_fold_seconds", "fold"),
)

PANES_FLUSHED = PromQL("sum(rate(driftline_panes_flushed_total[$__rate_interval]))", "panes")
WINDOWS_EVALUATED = PromQL(
    "sum by (model) (rate(driftline_windows_evaluated_total[$__rate_interval]))", "windows {{model}}"
)
HTTP_REQUESTS = PromQL(
    "sum by (status) (rate(driftline_http_requests_total[$__rate_interval]))", "{{status}}"
)

# The outbox's retries and failures (durable: the store, not the process).
NOTIFICATION_ATTEMPTS = Sql(
    f"""SELECT at AS time, receiver, kind, attempt, outcome, http_status, detail
                FROM {DB}.notifications
                WHERE outcome != 'sent' AND $__timeFilter(at)
                ORDER BY at DESC LIMIT 200""",
    ("time", "receiver", "kind", "attempt", "outcome", "http_status", "detail"),
    TABLE,
)
