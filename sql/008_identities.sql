-- Persons (identity.resolve = true routes each event to the person its identifiers belong to).
-- events.person_id: the person the event was routed to as it was processed; rows written
-- without routing, or before the column existed, read as their profile_id.
ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS person_id String DEFAULT profile_id AFTER profile_id;

-- identities: who each identifier belongs to, the highest `seq` (the identity graph's own order
-- of changes) winning. `identifier` is "<name>:<keyed hash>" (phones and emails under their kind),
-- "profileId:<id>", or "person:<id>" for a person merged into `person_id` by `merge_id` (so an
-- event's person now is the row of 'person:' || events.person_id, if any, else events.person_id;
-- `person_now` below). A replay writes the same rows again; FINAL or argMax collapses them.
CREATE TABLE IF NOT EXISTS {database}.identities
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
ENGINE = ReplacingMergeTree(seq)
ORDER BY identifier;

-- Each merged person id -> the person it belongs to now (persons never merged are not listed).
CREATE VIEW IF NOT EXISTS {database}.person_now AS
SELECT substring(identifier, 8) AS merged_id, argMax(person_id, seq) AS person_id
FROM {database}.identities
WHERE kind = 'person'
GROUP BY identifier
ORDER BY merged_id;

-- The customers' events as persons: profile_id is the person each event belongs to now
-- (its person_id, or the person that one merged into). `scrm report --by-person` reads
-- this view in place of `events FINAL`, so funnels, retention and attribution count persons
-- (without `inserted_at`: a person's rows were inserted at different times).
CREATE VIEW IF NOT EXISTS {database}.events_by_person AS
SELECT e.* EXCEPT (inserted_at) REPLACE (if(n.person_id = '', e.person_id, n.person_id) AS profile_id)
FROM {database}.events AS e FINAL
LEFT JOIN {database}.person_now AS n ON n.merged_id = e.person_id;
