-- report: journey_performance
-- answers: Per journey, node and A/B arm (holdout included): profiles reached, how many converted within N days, the rate, and the uplift over the holdout with a 95 % interval.
-- chart: bar
-- param: conversion String = 'order_paid'
-- param: days UInt32 = 7
-- A profile counts once per (journey, node, variant), at its first decision there; "reached" = sent or
-- holdout; "converted" = a conversion event after that decision, within `days`. Uplift = rate - the
-- holdout's rate in the same journey; interval: normal approximation,
-- ± 1.96 · sqrt(p1(1-p1)/n1 + p0(1-p0)/n0); NULL for the holdout itself or without one.
WITH arms AS
(
    SELECT
        a.journey_id AS journey_id, a.node_id AS node_id, a.variant AS variant,
        a.first_status = 'holdout' AS holdout,
        count() AS reached,
        countIf(arrayExists(x -> x > a.first_ts AND x <= a.first_ts + toIntervalDay({days:UInt32}), c.conv)) AS converted
    FROM
    (
        SELECT journey_id, node_id, variant, profile_id, argMin(status, ts) AS first_status, min(ts) AS first_ts
        FROM {database}.actions FINAL
        WHERE status IN ('sent', 'holdout')
        GROUP BY journey_id, node_id, variant, profile_id
    ) AS a
    LEFT JOIN
    (
        SELECT profile_id, groupArray(ts) AS conv
        FROM {database}.events FINAL
        WHERE type = {conversion:String} AND origin != 'engine'
        GROUP BY profile_id
    ) AS c ON c.profile_id = a.profile_id
    GROUP BY journey_id, node_id, variant, holdout
),
hold AS
(
    SELECT journey_id, sum(converted) / sum(reached) AS p0, sum(reached) AS n0
    FROM arms
    WHERE holdout
    GROUP BY journey_id
)
SELECT
    arms.journey_id AS journey_id, node_id, variant, holdout, reached, converted,
    round(converted / reached, 4) AS rate,
    if(hold.n0 > 0 AND NOT holdout, round(converted / reached - hold.p0, 4), NULL) AS uplift,
    if(
        hold.n0 > 0 AND NOT holdout,
        round(1.96 * sqrt(rate * (1 - rate) / reached + hold.p0 * (1 - hold.p0) / hold.n0), 4),
        NULL
    ) AS uplift_ci95
FROM arms
LEFT JOIN hold ON hold.journey_id = arms.journey_id
ORDER BY journey_id, node_id, variant
