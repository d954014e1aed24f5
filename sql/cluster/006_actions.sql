-- actions, cluster variant of sql/006_actions.sql (see there for the columns).
-- Sharded by profile_id, like the other tables of a profile. It is not in the ORDER BY
-- (journey_id, action_id, status), but action_id is a hash of the profile among others, so a
-- replayed decision carries the same profile_id, lands on the shard that has the first one and
-- FINAL (per shard) collapses it.
CREATE TABLE IF NOT EXISTS {database}.actions_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/actions', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (journey_id, action_id, status);

CREATE TABLE IF NOT EXISTS {database}.actions ON CLUSTER '{cluster}' AS {database}.actions_local
ENGINE = Distributed('{cluster}', {database}, actions_local, cityHash64(profile_id));
