-- events, cluster variant of sql/002_events.sql (see there for the columns): events_local on
-- every node, events the Distributed table the engine writes to and the reports read.
-- Sharded by profile_id, the first column of the ORDER BY: a replayed event lands on the shard
-- that has it, and FINAL (per shard) collapses it.
-- `late` and `person_id` (added by the ALTERs in sql/004_features.sql and sql/008_identities.sql
-- to databases older than them) are here from the start.
CREATE TABLE IF NOT EXISTS {database}.events_local ON CLUSTER '{cluster}'
(
    event_id      String,
    profile_id    String,
    person_id     String DEFAULT profile_id,
    type          LowCardinality(String),
    source        LowCardinality(String),
    ts            DateTime64(3, 'UTC'),
    ingested_at   DateTime64(3, 'UTC'),
    props         String CODEC(ZSTD(1)),
    identifiers   Map(String, String),
    pii_hashes    Map(String, String),
    origin        LowCardinality(String),
    src_partition Int32,
    src_offset    Int64,
    late          UInt8 DEFAULT 0,
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (profile_id, ts, event_id);

CREATE TABLE IF NOT EXISTS {database}.events ON CLUSTER '{cluster}' AS {database}.events_local
ENGINE = Distributed('{cluster}', {database}, events_local, cityHash64(profile_id));
