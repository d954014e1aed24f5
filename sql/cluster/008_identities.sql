-- Persons, cluster variant of sql/008_identities.sql (see there for the columns).
-- identities_local on every node, identities the Distributed table the engine writes to,
-- sharded by identifier (its ORDER BY), so a replayed row lands on the shard that has it.
-- (The ALTER of sql/008 is not needed here: events_local has `person_id` from the start.)

CREATE TABLE IF NOT EXISTS {database}.identities_local ON CLUSTER '{cluster}'
(
    identifier  String,
    kind        LowCardinality(String),
    person_id   String,
    merge_id    String,
    seq         UInt64,
    ts          DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/identities', '{replica}', seq)
ORDER BY identifier;

CREATE TABLE IF NOT EXISTS {database}.identities ON CLUSTER '{cluster}' AS {database}.identities_local
ENGINE = Distributed('{cluster}', {database}, identities_local, cityHash64(identifier));

CREATE VIEW IF NOT EXISTS {database}.person_now ON CLUSTER '{cluster}' AS
SELECT substring(identifier, 8) AS merged_id, argMax(person_id, seq) AS person_id
FROM {database}.identities
WHERE kind = 'person'
GROUP BY identifier
ORDER BY merged_id;
