-- Every journey decision, fired or not, with its reason: sent, capped, suppressed,
-- no_consent, deduped, holdout, quiet_hours_deferred, quiet_hours_dropped, task, ticket.
-- action_id = hash(journey, version, node, profile, trigger event): a replay writes the
-- same row again (ReplacingMergeTree), never a second id for one decision.
CREATE TABLE IF NOT EXISTS {database}.actions
(
    action_id        String,
    journey_id       LowCardinality(String),
    journey_version  UInt32,
    node_id          LowCardinality(String),
    profile_id       String,
    channel          LowCardinality(String),
    template         LowCardinality(String),
    variant          LowCardinality(String),
    status           LowCardinality(String),
    reason           String,
    trigger_event_id String,
    ts               DateTime64(3, 'UTC'),
    received_at      DateTime64(3, 'UTC'),
    detail           String,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (journey_id, action_id, status);
