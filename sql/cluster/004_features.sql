-- features, cluster variant of sql/004_features.sql (see there for the columns and queries).
-- Sharded by profile_id, the first column of the ORDER BY: one profile's snapshots are on one
-- shard, so "what did we know about p at time T" reads one shard's rows (and a single shard with
-- optimize_skip_unused_shards = 1), and a replayed snapshot is collapsed by FINAL on its shard.
-- (The ALTER of sql/004 is not needed here: events_local has the column `late` from the start.)
CREATE TABLE IF NOT EXISTS {database}.features_local ON CLUSTER '{cluster}'
(
    profile_id  String,
    ts          DateTime64(3, 'UTC'),
    values      Map(LowCardinality(String), Float64),
    segment     LowCardinality(String) DEFAULT '',
    tags        Array(LowCardinality(String)) DEFAULT [],
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/features', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (profile_id, ts);

CREATE TABLE IF NOT EXISTS {database}.features ON CLUSTER '{cluster}' AS {database}.features_local
ENGINE = Distributed('{cluster}', {database}, features_local, cityHash64(profile_id));
