-- Alert state transitions (inactive/pending/firing); the newest row per fingerprint is its state.
CREATE TABLE IF NOT EXISTS {database}.alerts
(
    fingerprint String,
    state       LowCardinality(String),
    breaches    UInt32,
    started     Nullable(Float64),
    rule        String,
    model_id    String,
    model_version String,
    feature     String,
    metric      LowCardinality(String),
    severity    LowCardinality(String),
    status      LowCardinality(String),   -- firing | resolved: what the transition announced
    value       Float64,
    threshold   Float64,
    window_end  Int64,
    alert       String,                   -- the full alert as JSON
    at          DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (model_id, fingerprint, at)
TTL toDateTime(at) + INTERVAL {ttl_days} DAY;

-- Every delivery attempt of every notification.
CREATE TABLE IF NOT EXISTS {database}.notifications
(
    receiver    String,
    entry_id    String,
    kind        LowCardinality(String),
    attempt     UInt32,
    outcome     LowCardinality(String),   -- sent | retry | failed
    http_status Nullable(UInt16),
    detail      String,
    at          DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (receiver, at)
TTL toDateTime(at) + INTERVAL {ttl_days} DAY;

-- Silences: matchers on alert labels for a time range; expiring one writes a newer version.
CREATE TABLE IF NOT EXISTS {database}.silences
(
    id         String,
    matchers   String,                    -- JSON object label -> glob
    starts_at  Float64,
    ends_at    Float64,
    comment    String,
    created_by String,
    version    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;
