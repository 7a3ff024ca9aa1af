-- Labels that arrive on their own topic, joined to their predictions by event_id
-- (consume --label-topic). Every write is an idempotent upsert: a replayed batch changes nothing.

-- Predictions waiting for their labels: one row per event, gone after the label horizon.
CREATE TABLE IF NOT EXISTS {database}.predictions
(
    model_id      String,
    event_id      String,
    model_version String,
    pane_start    Int64,                        -- pane of the prediction's event time
    score         Float64,                      -- a numeric prediction (NaN: a class)
    class         String,                       -- the prediction as category text
    labelled      UInt8,                        -- the event carried its label: already counted
    segments      String,                       -- JSON: its segments (fairness of late labels)
    reference_id  String,                       -- the bins its event was folded on
    expires_at    DateTime('UTC'),              -- written + the label horizon
    inserted_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (model_id, event_id)
TTL expires_at;

-- Every label event, joined or not; a later label (by its time) for an event replaces the earlier
-- (counted once), however the two arrived.
CREATE TABLE IF NOT EXISTS {database}.labels
(
    model_id      String,
    event_id      String,
    label_num     Float64,                      -- a numeric label (NaN: a class)
    label_text    String,                       -- the label as category text
    label_ts      Int64,                        -- the label event's time (epoch ms)
    model_version String,                       -- of its prediction, once joined
    pane_start    Int64,                        -- pane of its prediction, -1 while not known
    source        String,                       -- topic[partition]@offset
    inserted_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(label_ts)
ORDER BY (model_id, event_id)
TTL toDateTime(inserted_at) + INTERVAL {ttl_days} DAY;

-- Per pane, the performance and label sketches of its joined labels, recomputed from the two
-- tables above whenever labels of the pane arrive; the one with the most labels wins.
CREATE TABLE IF NOT EXISTS {database}.pane_joined
(
    kind          LowCardinality(String),       -- performance | label
    model_id      String,
    model_version String,
    pane_start    Int64,
    pane_ms       UInt32,
    n             UInt64,                       -- joined labels it holds
    sketch        String,
    reference_id  String,
    computed_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(n)
ORDER BY (model_id, model_version, pane_start, kind)
TTL toDateTime(computed_at) + INTERVAL {ttl_days} DAY;
