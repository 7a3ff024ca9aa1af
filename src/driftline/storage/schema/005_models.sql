-- Model registrations: description, owner, per-model thresholds. The newest row wins.
CREATE TABLE IF NOT EXISTS {database}.models
(
    model_id   String,
    config     String,                    -- JSON
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY model_id;
