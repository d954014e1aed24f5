-- One row per accepted event (after validation and eventId dedupe).
-- ReplacingMergeTree on (profile_id, ts, event_id): a replay after a crash writes the same
-- key again and the merge keeps one; exact counts use FINAL.
-- identifiers / PII props are masked; pii_hashes holds their keyed hashes (HMAC-SHA256).
-- late = 1: stored, but too late (features.allowed_lateness_s) to change any feature.
CREATE TABLE IF NOT EXISTS {database}.events
(
    event_id      String,
    profile_id    String,
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (profile_id, ts, event_id);
