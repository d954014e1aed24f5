-- Daily aggregates for analysts, kept up to date by materialized views on every insert.
-- Query the plain views (any ClickHouse client, e.g. SELECT * FROM scrm.daily_revenue):
--   daily_events          day, type, source: events (distinct event_id), profiles (distinct
--                         profile_id) - customers' events only (origin != 'engine')
--   daily_active_profiles day: profiles (distinct profile_id over all types), events
--                         (distinct event_id) - customers' events only
--   daily_actions         day, journey_id, node_id, channel, status: actions (distinct
--                         action_id), profiles (distinct profile_id) - journey decisions
--   daily_revenue         day, currency: orders (distinct paid orders), buyers (distinct
--                         profile_id), revenue (sum of props.amount, Decimal, 4 places)
-- Storage (read through the views, not directly):
--   events_daily_agg  AggregatingMergeTree (day, type, source, origin) of uniqExact states,
--                     fed by events_daily_mv. Keyed by origin too, so the engine's own events
--                     (origin = 'engine': segment_changed, tag_added...) are there as well:
--                     SELECT day, type, uniqExactMerge(event_ids) FROM scrm.events_daily_agg
--                     WHERE origin = 'engine' GROUP BY day, type
--   actions_daily_agg AggregatingMergeTree (day, journey_id, node_id, status, channel) of
--                     uniqExact states, fed by actions_daily_mv
--   paid_orders       ReplacingMergeTree (day, event_id): one row per order_paid event,
--                     fed by paid_orders_mv
-- Days are UTC (toDate(ts, 'UTC')).
--
-- Exact under replays: events and actions are written at least once, so a replay or a
-- crash-restart inserts the same row again, and each insert also passes through the views.
-- The counts are states of uniqExact (the set of ids seen), and merging two states is a set
-- union: the same event_id / action_id / profile_id inserted twice is counted once, and the
-- views give the same answer as a count(DISTINCT ...) over the source table with FINAL.
-- Revenue cannot be a sum state (a second insert would add the amount twice), so
-- paid_orders keeps one row per order keyed by (day, event_id) and daily_revenue sums it
-- with FINAL: duplicates collapse before the sum. One row per order is cheap next to events.
-- Amounts are Decimal(18, 4), read from the JSON number through its shortest text form (a
-- cast from Float64 truncates 16.4 to 16.3999, and JSONExtract(..., 'Decimal') only reads the
-- text on recent servers), so sums are exact whatever the order of rows (an
-- order without an amount counts with 0, without a currency under currency '').
--
-- Cost: a uniqExact state stores a 128-bit hash of every distinct id per key per day, so
-- events_daily_agg holds about 16 bytes per stored event plus 16 per (profile, day, type,
-- source, origin), actions_daily_agg the same per decision, and the views merge these sets at
-- query time (memory grows with the ids in the days read). When approximate answers will do,
-- the cheaper alternative is uniq / uniqState: a sample of at most 65536 hashes per key
-- (bounded size, exact for small sets, around 1% error on large ones), just as insensitive
-- to duplicates. Switching would be a new, higher-numbered file with new tables.
--
-- Backfill: after each view is created, an INSERT ... SELECT fills its target from the rows
-- already in the source table. Harmless when re-applied (a database from before
-- schema_migrations is brought up to date by running this file again) and when rows arrive
-- meanwhile: a row seen by both the view and the backfill is only a duplicate, which the
-- states and FINAL ignore. An insert already in flight while the view is created could in
-- principle be missed by both: the INSERT statements below may be re-run by hand at any time.

CREATE TABLE IF NOT EXISTS {database}.events_daily_agg
(
    day         Date,
    type        LowCardinality(String),
    source      LowCardinality(String),
    origin      LowCardinality(String),
    event_ids   AggregateFunction(uniqExact, String),
    profile_ids AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, type, source, origin);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.events_daily_mv TO {database}.events_daily_agg AS
SELECT toDate(ts, 'UTC') AS day, type, source, origin,
       uniqExactState(event_id) AS event_ids, uniqExactState(profile_id) AS profile_ids
FROM {database}.events
GROUP BY day, type, source, origin;

INSERT INTO {database}.events_daily_agg (day, type, source, origin, event_ids, profile_ids)
SELECT toDate(ts, 'UTC') AS day, type, source, origin,
       uniqExactState(event_id) AS event_ids, uniqExactState(profile_id) AS profile_ids
FROM {database}.events
GROUP BY day, type, source, origin;

CREATE TABLE IF NOT EXISTS {database}.actions_daily_agg
(
    day         Date,
    journey_id  LowCardinality(String),
    node_id     LowCardinality(String),
    status      LowCardinality(String),
    channel     LowCardinality(String),
    action_ids  AggregateFunction(uniqExact, String),
    profile_ids AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, journey_id, node_id, status, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.actions_daily_mv TO {database}.actions_daily_agg AS
SELECT toDate(ts, 'UTC') AS day, journey_id, node_id, status, channel,
       uniqExactState(action_id) AS action_ids, uniqExactState(profile_id) AS profile_ids
FROM {database}.actions
GROUP BY day, journey_id, node_id, status, channel;

INSERT INTO {database}.actions_daily_agg (day, journey_id, node_id, status, channel, action_ids, profile_ids)
SELECT toDate(ts, 'UTC') AS day, journey_id, node_id, status, channel,
       uniqExactState(action_id) AS action_ids, uniqExactState(profile_id) AS profile_ids
FROM {database}.actions
GROUP BY day, journey_id, node_id, status, channel;

CREATE TABLE IF NOT EXISTS {database}.paid_orders
(
    day        Date,
    event_id   String,
    profile_id String,
    ts         DateTime64(3, 'UTC'),
    source     LowCardinality(String),
    currency   LowCardinality(String),
    amount     Decimal(18, 4)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.paid_orders_mv TO {database}.paid_orders AS
SELECT toDate(ts, 'UTC') AS day, event_id, profile_id, ts, source,
       JSONExtractString(props, 'currency') AS currency,
       toDecimal64OrZero(toString(JSONExtractFloat(props, 'amount')), 4) AS amount
FROM {database}.events
WHERE type = 'order_paid' AND origin != 'engine';

INSERT INTO {database}.paid_orders (day, event_id, profile_id, ts, source, currency, amount)
SELECT toDate(ts, 'UTC') AS day, event_id, profile_id, ts, source,
       JSONExtractString(props, 'currency') AS currency,
       toDecimal64OrZero(toString(JSONExtractFloat(props, 'amount')), 4) AS amount
FROM {database}.events
WHERE type = 'order_paid' AND origin != 'engine';

CREATE VIEW IF NOT EXISTS {database}.daily_events AS
SELECT day, type, source, uniqExactMerge(event_ids) AS events, uniqExactMerge(profile_ids) AS profiles
FROM {database}.events_daily_agg
WHERE origin != 'engine'
GROUP BY day, type, source
ORDER BY day, type, source;

CREATE VIEW IF NOT EXISTS {database}.daily_active_profiles AS
SELECT day, uniqExactMerge(profile_ids) AS profiles, uniqExactMerge(event_ids) AS events
FROM {database}.events_daily_agg
WHERE origin != 'engine'
GROUP BY day
ORDER BY day;

CREATE VIEW IF NOT EXISTS {database}.daily_actions AS
SELECT day, journey_id, node_id, channel, status,
       uniqExactMerge(action_ids) AS actions, uniqExactMerge(profile_ids) AS profiles
FROM {database}.actions_daily_agg
GROUP BY day, journey_id, node_id, channel, status
ORDER BY day, journey_id, node_id, channel, status;

CREATE VIEW IF NOT EXISTS {database}.daily_revenue AS
SELECT day, currency, count() AS orders, uniqExact(profile_id) AS buyers, sum(amount) AS revenue
FROM {database}.paid_orders FINAL
GROUP BY day, currency
ORDER BY day, currency;
