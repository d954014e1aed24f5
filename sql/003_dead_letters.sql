-- One row per rejected input record, with a machine-readable reason and the raw bytes
-- (cut to validation.dead_letter_raw_bytes; raw_size is the original length).
-- Keyed by where the record came from, so a replay does not add a second row.
CREATE TABLE IF NOT EXISTS {database}.dead_letters
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
ENGINE = ReplacingMergeTree
ORDER BY (origin, src_partition, src_offset, raw_hash);
