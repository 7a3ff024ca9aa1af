-- Reference binning and reference sketch per (model, feature). The newest row wins.
CREATE TABLE IF NOT EXISTS {database}.references
(
    model_id     String,
    feature      String,                       -- '' for the model-level latency/fairness sketches
    kind         LowCardinality(String),
    bins         String,
    sketch       String,
    n            UInt64,
    reference_id String,
    source       String,
    created_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (model_id, feature, kind);
