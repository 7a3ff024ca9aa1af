"""Prometheus instruments of the driftline process (scraped at ``/metrics``), imported as ``prom``.

Names follow Prometheus conventions: counters end in ``_total``, durations are ``_seconds``
histograms, labels have bounded cardinality (model, feature and metric come from configured
references and rules, partitions from the topic layout).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS = Counter(
    "driftline_events_total",
    "Events received, by model and outcome (accepted, rejected, late; staged: awaiting a reference).",
    ["model", "outcome"],
)
DECODE_SECONDS = Histogram(
    "driftline_decode_seconds", "Time to decode and validate one consumed batch.", buckets=_LATENCY_BUCKETS
)
FOLD_SECONDS = Histogram(
    "driftline_fold_seconds", "Time to fold one batch into pane sketches.", buckets=_LATENCY_BUCKETS
)
LABELS = Counter(
    "driftline_labels_total",
    "Label events from the label topic, by model and outcome (joined, waiting, rejected).",
    ["model", "outcome"],
)
ORPHAN_LABELS = Gauge(
    "driftline_orphan_labels",
    "Labels still without their prediction after the label horizon (stored, never joined).",
    ["model"],
)
CONSUMER_LAG = Gauge(
    "driftline_consumer_lag_messages",
    "Messages behind the partition's high watermark (from librdkafka statistics).",
    ["topic", "partition"],
)
SEGMENT_OVERFLOW = Counter(
    "driftline_segment_overflow_total",
    "Segment entries of accepted events not folded as sent, by reason: value (outside the reference's "
    "most frequent values of its attribute, folded as <other>) or attribute (not one the model folds, "
    "ignored).",
    ["reason"],
)
DEAD_LETTERS = Counter(
    "driftline_dead_letters_total",
    "Rejected messages by where they ended: produced to the dead-letter topic, or spilled to the "
    "local dead-letter file because the topic refused them.",
    ["destination"],
)
WATERMARK_LAG = Gauge(
    "driftline_watermark_lag_seconds", "Wall clock minus the consumer's event-time watermark.", ["consumer"]
)
WINDOWS_PENDING = Gauge(
    "driftline_windows_pending", "Windows waiting for evaluation (not final yet, or queued).", ["consumer"]
)
REFERENCES_BOOTSTRAPPED = Counter(
    "driftline_references_bootstrapped_total", "References fitted on a model's first events (warm-up)."
)
PANES_FLUSHED = Counter("driftline_panes_flushed_total", "Pane sketch rows written to the store.")
STORE_WRITE_SECONDS = Histogram(
    "driftline_store_write_seconds", "Duration of one store flush (insert).", buckets=_LATENCY_BUCKETS
)
STORE_ERRORS = Counter("driftline_store_errors_total", "Store operations that failed.", ["operation"])
WINDOWS_EVALUATED = Counter("driftline_windows_evaluated_total", "Drift windows computed.", ["model"])
ALERTS_FIRING = Gauge("driftline_alerts_firing", "Alerts currently firing.", ["model", "severity"])
NOTIFICATIONS = Counter(
    "driftline_notifications_total",
    "Notification delivery attempts by receiver and outcome (sent, retry, failed).",
    ["receiver", "outcome"],
)
NOTIFICATIONS_DEAD = Counter(
    "driftline_notifications_dead_total",
    "Notifications given up undelivered (the receiver's max_attempts or max_age, or refused for good).",
    ["receiver"],
)
DRIFT_VALUE = Gauge(
    "driftline_drift_value",
    "Latest value of a drift metric for a model feature (last evaluated window).",
    ["model", "feature", "metric"],
)
HTTP_REQUESTS = Counter(
    "driftline_http_requests_total", "API requests by route and status code.", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "driftline_http_request_seconds", "API request duration by route.", ["route"], buckets=_LATENCY_BUCKETS
)
# Drift gauges only for these metrics keep the series count at models x features x 4.
GAUGED_METRICS = ("psi", "ks", "js", "null_rate")
