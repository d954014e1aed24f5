-- Databases created before features existed get the `late` column (idempotent).
ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS late UInt8 DEFAULT 0 AFTER src_offset;

-- Feature snapshots: what the engine knew about a profile as of `ts` (event time).
-- Written when values change, at most one row per profile per features.snapshot_interval_s.
-- "What did we know about p at time T":
--   SELECT argMax(values, ts) FROM scrm.features WHERE profile_id = 'p' AND ts <= T
CREATE TABLE IF NOT EXISTS {database}.features
(
    profile_id  String,
    ts          DateTime64(3, 'UTC'),
    values      Map(LowCardinality(String), Float64),
    segment     LowCardinality(String) DEFAULT '',
    tags        Array(LowCardinality(String)) DEFAULT [],
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (profile_id, ts);
