-- Every reference saved, kept: which was in effect from when (``driftline reference list``,
-- the API's /references of a model). The references table keeps only each model's newest.
CREATE TABLE IF NOT EXISTS {database}.reference_versions
(
    model_id     String,
    reference_id String,
    source       String,                       -- the file, "upload", or "range FROM .. TO"
    events       UInt64,
    features     UInt32,
    created_at   DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (model_id, created_at);
