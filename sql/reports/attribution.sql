-- report: attribution
-- answers: Which journey sends get credit for orders: last-touch (the last send before the order) and linear (every send before it shares equally), within a window.
-- param: conversion String = 'order_paid'
-- param: window_days UInt32 = 7
-- A send "touches" an order of the same profile when it came before the order, at most `window_days`
-- earlier. Revenue is the order's props.amount. Ties in time: the greater (journey, node) is last.
WITH
    orders AS
    (
        SELECT event_id AS order_id, profile_id, ts AS order_ts, JSONExtractFloat(props, 'amount') AS amount
        FROM {database}.events FINAL
        WHERE type = {conversion:String} AND origin != 'engine'
    ),
    pairs AS
    (
        SELECT o.order_id AS order_id, o.amount AS amount, t.journey_id AS journey_id, t.node_id AS node_id,
               t.ts AS touch_ts
        FROM orders AS o
        INNER JOIN
        (
            SELECT profile_id, journey_id, node_id, ts
            FROM {database}.actions FINAL
            WHERE status = 'sent'
        ) AS t ON t.profile_id = o.profile_id
        WHERE t.ts < o.order_ts AND o.order_ts <= t.ts + toIntervalDay({window_days:UInt32})
    ),
    per_order AS
    (
        SELECT order_id, count() AS n,
               argMax(tuple(journey_id, node_id, touch_ts), tuple(touch_ts, journey_id, node_id)) AS last
        FROM pairs
        GROUP BY order_id
    )
SELECT
    journey_id,
    node_id,
    countIf(is_last) AS last_touch_orders,
    round(sumIf(amount, is_last), 2) AS last_touch_revenue,
    round(sum(1 / n), 4) AS linear_orders,
    round(sum(amount / n), 2) AS linear_revenue
FROM
(
    SELECT p.journey_id AS journey_id, p.node_id AS node_id, p.amount AS amount, po.n AS n,
           tuple(p.journey_id, p.node_id, p.touch_ts) = po.last AS is_last
    FROM pairs AS p
    INNER JOIN per_order AS po ON po.order_id = p.order_id
)
GROUP BY journey_id, node_id
ORDER BY journey_id, node_id
