-- dead_letters, cluster variant of sql/003_dead_letters.sql (see there for the columns).
-- There is no profile here (the record could not be read): sharded by where the record came
-- from, the first columns of the ORDER BY, so a re-delivered record lands on the shard that has
-- it and FINAL (per shard) collapses it. (The last ORDER BY column, raw_hash, is left out: a
-- record's origin, partition and offset already place it.)
CREATE TABLE IF NOT EXISTS {database}.dead_letters_local ON CLUSTER '{cluster}'
(
    received_at   DateTime64(3, 'UTC'),
    reason        LowCardinality(String),
    detail        String,
    raw           String CODEC(ZSTD(3)),
    raw_size      UInt32,
    raw_key       String,
    origin        LowCardinality(String),
    src_partition Int32,
    src_offset    Int64,
    raw_hash      UInt64 MATERIALIZED cityHash64(raw),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/dead_letters', '{replica}')
ORDER BY (origin, src_partition, src_offset, raw_hash);

CREATE TABLE IF NOT EXISTS {database}.dead_letters ON CLUSTER '{cluster}' AS {database}.dead_letters_local
ENGINE = Distributed('{cluster}', {database}, dead_letters_local, cityHash64(origin, src_partition, src_offset));
