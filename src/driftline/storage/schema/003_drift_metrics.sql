-- One row per (model, version, feature, window, metric); a recomputation replaces the row.
CREATE TABLE IF NOT EXISTS {database}.drift_metrics
(
    model_id      String,
    model_version String,
    feature       String,
    window_start  Int64,
    window_end    Int64,
    metric        LowCardinality(String),
    value         Float64,
    p_value       Nullable(Float64),
    n_ref         UInt64,
    n_cur         UInt64,
    status        LowCardinality(String),     -- ok | drift | insufficient
    computed_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(fromUnixTimestamp64Milli(window_end))
ORDER BY (model_id, model_version, feature, metric, window_end, window_start)
-- TTL by write time: backfilled old windows must not expire on insert.
TTL toDateTime(computed_at) + INTERVAL {ttl_days} DAY;
