-- Partial pane sketches: one row per (model, version, feature, pane, kind) per flush, plus one
-- 'offset' row per source partition per flush. A pane is the merge of its rows.
-- Partitioned by the insert time, which is one value per INSERT, so every flush is a single
-- part: atomic, and a retried flush with the same token is dropped by the dedup window.
CREATE TABLE IF NOT EXISTS {database}.pane_sketches
(
    kind             LowCardinality(String),   -- numeric | categorical | latency | fairness | events | offset
    model_id         String,
    model_version    String,
    feature          String,
    pane_start       Int64,                    -- epoch ms of event time
    pane_ms          UInt32,
    late             UInt8,                    -- 1: correction sketch of events later than the lateness
    n                UInt64,
    sketch           String,                   -- driftline sketch bytes (detectors/_codec.py)
    reference_id     String,                   -- binning the sketch was built on
    consumer_group   String,
    source_topic     String,
    source_partition Int32,
    offset_start     Int64,
    offset_end       Int64,                    -- last offset covered by this flush (inclusive)
    flush_id         String,
    inserted_at      DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(inserted_at)
ORDER BY (kind, model_id, model_version, feature, pane_start)
TTL toDateTime(inserted_at) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
