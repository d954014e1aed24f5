-- Daily views, cluster variant of sql/007_daily_views.sql: the same views, with the same columns
-- and answers (what they count, and why they are exact under replays, is described there).
--
-- Where each piece lives:
--   events_daily_agg_local, actions_daily_agg_local, paid_orders_local: the stores, on every node,
--       with the Replicated variants of the engines of sql/007 and the same keys;
--   events_daily_mv, actions_daily_mv, paid_orders_mv: materialized views on events_local and
--       actions_local, on every node, each writing into its own node's *_local store;
--   events_daily_agg, actions_daily_agg, paid_orders: Distributed tables over the stores;
--   daily_events, daily_active_profiles, daily_actions, daily_revenue: the plain views, the same
--       queries as in sql/007, reading the Distributed stores (every shard's part, merged).
--
-- Why the materialized views are on the local tables: a materialized view is an insert trigger on
-- the table it selects from, run on the node where that table receives the insert. On the
-- Distributed table `events` it would see only the inserts made through that table on that node:
-- none on a node where it was not created, and none made directly into events_local (a backfill,
-- a restore). On events_local every shard aggregates exactly the rows it stores, as they are
-- inserted. Replication does not run a view again: a replica that fetches a part of events_local
-- does not insert it, and gets the aggregates through the replication of the store instead.
-- The views keep the names of sql/007, so its CREATE MATERIALIZED VIEW IF NOT EXISTS (run by
-- `scrm init` and `scrm run`) finds them and does not add a second view, on the Distributed table.
--
-- Exact across shards, with each id living on one shard: events and actions are sharded by
-- profile_id, so all rows of a profile (its events, its decisions and every replay of them) are
-- stored, and aggregated by the views, on one shard; a shard's uniqExact states hold the ids of
-- its own profiles. uniqExactMerge over a Distributed store is still exact: a GROUP BY on a
-- Distributed table sends each shard's partial states (its sets of ids) to the node that asked,
-- which unions them, so the views count what sql/007 counts (an id in two shards' states - e.g.
-- after a backfill through the Distributed store - would still count once). paid_orders is
-- sharded by profile_id too: a row inserted through the Distributed table (the backfill INSERT of
-- sql/007) lands on the shard where the view wrote the same row, FINAL (applied by each shard)
-- collapses them, and count() / sum(amount) add shards that share no order.
--
-- events_daily_agg and actions_daily_agg are sharded by rand(): their rows come from the views on
-- each shard, not through the Distributed table, so no key computed from a row tells where the row
-- is, and ClickHouse may trust a deterministic key (optimize_skip_unused_shards skips shards by it,
-- and then optimize_distributed_group_by_sharding_key finishes a GROUP BY over the key on each
-- shard). rand() claims nothing; it only spreads what is inserted through the Distributed table
-- (the backfill INSERTs of sql/007), duplicates that the union of states absorbs.
--
-- Backfill: there is no INSERT ... SELECT here (an INSERT cannot run ON CLUSTER, and a new
-- database has nothing to backfill). The backfill INSERTs of sql/007 - applied by `scrm init`
-- and `scrm run` once per node they connect to, and safe to re-run by hand at any time - read
-- the Distributed tables and write through the Distributed stores: harmless duplicates of what
-- the views wrote.

CREATE TABLE IF NOT EXISTS {database}.events_daily_agg_local ON CLUSTER '{cluster}'
(
    day         Date,
    type        LowCardinality(String),
    source      LowCardinality(String),
    origin      LowCardinality(String),
    event_ids   AggregateFunction(uniqExact, String),
    profile_ids AggregateFunction(uniqExact, String)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/events_daily_agg', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, type, source, origin);

CREATE TABLE IF NOT EXISTS {database}.events_daily_agg ON CLUSTER '{cluster}' AS {database}.events_daily_agg_local
ENGINE = Distributed('{cluster}', {database}, events_daily_agg_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.events_daily_mv ON CLUSTER '{cluster}'
TO {database}.events_daily_agg_local AS
SELECT toDate(ts, 'UTC') AS day, type, source, origin,
       uniqExactState(event_id) AS event_ids, uniqExactState(profile_id) AS profile_ids
FROM {database}.events_local
GROUP BY day, type, source, origin;

CREATE TABLE IF NOT EXISTS {database}.actions_daily_agg_local ON CLUSTER '{cluster}'
(
    day         Date,
    journey_id  LowCardinality(String),
    node_id     LowCardinality(String),
    status      LowCardinality(String),
    channel     LowCardinality(String),
    action_ids  AggregateFunction(uniqExact, String),
    profile_ids AggregateFunction(uniqExact, String)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/actions_daily_agg', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, journey_id, node_id, status, channel);

CREATE TABLE IF NOT EXISTS {database}.actions_daily_agg ON CLUSTER '{cluster}' AS {database}.actions_daily_agg_local
ENGINE = Distributed('{cluster}', {database}, actions_daily_agg_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.actions_daily_mv ON CLUSTER '{cluster}'
TO {database}.actions_daily_agg_local AS
SELECT toDate(ts, 'UTC') AS day, journey_id, node_id, status, channel,
       uniqExactState(action_id) AS action_ids, uniqExactState(profile_id) AS profile_ids
FROM {database}.actions_local
GROUP BY day, journey_id, node_id, status, channel;

CREATE TABLE IF NOT EXISTS {database}.paid_orders_local ON CLUSTER '{cluster}'
(
    day        Date,
    event_id   String,
    profile_id String,
    ts         DateTime64(3, 'UTC'),
    source     LowCardinality(String),
    currency   LowCardinality(String),
    amount     Decimal(18, 4)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/paid_orders', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, event_id);

CREATE TABLE IF NOT EXISTS {database}.paid_orders ON CLUSTER '{cluster}' AS {database}.paid_orders_local
ENGINE = Distributed('{cluster}', {database}, paid_orders_local, cityHash64(profile_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.paid_orders_mv ON CLUSTER '{cluster}'
TO {database}.paid_orders_local AS
SELECT toDate(ts, 'UTC') AS day, event_id, profile_id, ts, source,
       JSONExtractString(props, 'currency') AS currency,
       toDecimal64OrZero(toString(JSONExtractFloat(props, 'amount')), 4) AS amount
FROM {database}.events_local
WHERE type = 'order_paid' AND origin != 'engine';

CREATE VIEW IF NOT EXISTS {database}.daily_events ON CLUSTER '{cluster}' AS
SELECT day, type, source, uniqExactMerge(event_ids) AS events, uniqExactMerge(profile_ids) AS profiles
FROM {database}.events_daily_agg
WHERE origin != 'engine'
GROUP BY day, type, source
ORDER BY day, type, source;

CREATE VIEW IF NOT EXISTS {database}.daily_active_profiles ON CLUSTER '{cluster}' AS
SELECT day, uniqExactMerge(profile_ids) AS profiles, uniqExactMerge(event_ids) AS events
FROM {database}.events_daily_agg
WHERE origin != 'engine'
GROUP BY day
ORDER BY day;

CREATE VIEW IF NOT EXISTS {database}.daily_actions ON CLUSTER '{cluster}' AS
SELECT day, journey_id, node_id, channel, status,
       uniqExactMerge(action_ids) AS actions, uniqExactMerge(profile_ids) AS profiles
FROM {database}.actions_daily_agg
GROUP BY day, journey_id, node_id, channel, status
ORDER BY day, journey_id, node_id, channel, status;

CREATE VIEW IF NOT EXISTS {database}.daily_revenue ON CLUSTER '{cluster}' AS
SELECT day, currency, count() AS orders, uniqExact(profile_id) AS buyers, sum(amount) AS revenue
FROM {database}.paid_orders FINAL
GROUP BY day, currency
ORDER BY day, currency;
