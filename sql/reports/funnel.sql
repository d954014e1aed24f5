-- report: funnel
-- answers: How many profiles did the steps in order, each within `window_s` of the first, and the conversion from the first step.
-- chart: bar
-- param: steps Array(String) = ['session_start', 'product_view', 'add_to_cart', 'checkout_started', 'order_paid']
-- param: window_s UInt64 = 86400
-- param: since DateTime64(3) = '2000-01-01 00:00:00'
-- param: until DateTime64(3) = '2100-01-01 00:00:00'
-- Up to 8 steps; ClickHouse windowFunnel (default mode) over the customers' own events.
SELECT
    step,
    {steps:Array(String)}[step] AS event_type,
    countIf(level >= step) AS profiles,
    round(profiles / max(countIf(level >= 1)) OVER (), 4) AS conversion
FROM
(
    SELECT
        profile_id,
        windowFunnel({window_s:UInt64})(
            toDateTime(ts),
            type = {steps:Array(String)}[1], type = {steps:Array(String)}[2],
            type = {steps:Array(String)}[3], type = {steps:Array(String)}[4],
            type = {steps:Array(String)}[5], type = {steps:Array(String)}[6],
            type = {steps:Array(String)}[7], type = {steps:Array(String)}[8]
        ) AS level
    FROM {database}.events FINAL
    WHERE origin != 'engine' AND ts >= {since:DateTime64(3)} AND ts < {until:DateTime64(3)}
    GROUP BY profile_id
)
ARRAY JOIN range(1, length({steps:Array(String)}) + 1) AS step
GROUP BY step
ORDER BY step
