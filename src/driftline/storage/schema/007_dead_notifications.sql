-- Notifications given up undelivered (attempts or age exhausted, or refused for good): one row
-- per alert they carried, so `driftline alerts` and /v1/alerts/history list them.
CREATE TABLE IF NOT EXISTS {database}.dead_notifications
(
    receiver    String,
    entry_id    String,
    kind        LowCardinality(String),   -- alert | group | retrain
    attempts    UInt32,
    reason      String,                   -- the last attempt's status and detail
    model_id    String,
    alert       String,                   -- the alert as JSON
    at          DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (model_id, at)
TTL toDateTime(at) + INTERVAL {ttl_days} DAY;
