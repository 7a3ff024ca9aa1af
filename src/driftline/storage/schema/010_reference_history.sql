-- Every reference's bins and sketch, by its id, kept after it is replaced: panes folded on an older
-- reference's bins are compared with that reference (a range read after a replacement). The
-- references table keeps only each model's newest. A re-save of the same bins keeps its newest.
CREATE TABLE IF NOT EXISTS {database}.reference_history
(
    model_id     String,
    reference_id String,
    feature      String,
    kind         LowCardinality(String),
    bins         String,
    sketch       String,
    n            UInt64,
    source       String,
    created_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (model_id, reference_id, feature, kind);
