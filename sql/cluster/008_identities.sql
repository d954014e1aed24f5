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

-- The customers' events as persons: profile_id is the person each event belongs to now
-- (its person_id, or the person that one merged into). `scrm report --by-person` reads
-- this view in place of `events FINAL`, so funnels, retention and attribution count persons
-- (without `inserted_at`: a person's rows were inserted at different times).
CREATE VIEW IF NOT EXISTS {database}.events_by_person ON CLUSTER '{cluster}' AS
SELECT e.* EXCEPT (inserted_at) REPLACE (if(n.person_id = '', e.person_id, n.person_id) AS profile_id)
FROM {database}.events AS e FINAL
LEFT JOIN {database}.person_now AS n ON n.merged_id = e.person_id;
