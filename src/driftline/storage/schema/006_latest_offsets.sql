-- The last stored offset and the newest event time per (group, topic, partition), kept inside
-- every part of pane_sketches as an aggregate projection: written by the same insert as the
-- flush it describes (atomic with it), and read per part, not per flush row, so resuming and
-- fencing cost the same however long the table grows. Parts written before this migration are
-- read without it (same answer, slower) until they merge.
ALTER TABLE {database}.pane_sketches ADD PROJECTION IF NOT EXISTS latest_offsets
(
    SELECT kind, consumer_group, source_topic, source_partition, max(offset_end), max(pane_start)
    GROUP BY kind, consumer_group, source_topic, source_partition
);
