-- report: churn_calibration
-- answers: Is the churn model calibrated: per score decile, the mean predicted probability against the share of those scores after which the profile showed no activity within the horizon.
-- chart: calibration
-- param: model String = 'churn'
-- param: horizon_s UInt64 = 0
-- param: horizon_quantile Float64 = 0.9
-- param: horizon_multiple Float64 = 1.0
-- param: activity_types Array(String) = ['signup', 'session_start', 'page_view', 'search', 'product_view', 'add_to_cart', 'remove_from_cart', 'checkout_started', 'order_created', 'order_paid', 'ticket_opened', 'message_opened', 'message_clicked', 'message_replied']
-- The label of config/models.toml ([model.label] kind = "inactivity"; keep the parameters in
-- step with it; [] = any customer event): a score of a profile at t is observed churn (1)
-- when the profile has no activity event (origin != 'engine', type in `activity_types`)
-- with t < ts <= t + horizon, else 0. `horizon_s` = 0 is the automatic horizon, computed
-- from the stored events the way the engine learns it: `horizon_multiple` x the
-- `horizon_quantile` of the gaps of a day or more between a profile's activity events,
-- within 1 to 365 days (30 days below 50 gaps); the engine learns it as the stream goes,
-- this reads all of it.
-- Sampled: each profile's last score of each UTC day (by score ts); fallback scores
-- (model_version 0, served before the model had learned enough) are not the model's and
-- are left out. Only scores whose horizon has passed are counted: t + horizon < the latest
-- customer event time in the table (origin != 'engine'; the engine resolves label 1 the
-- same way against its watermark).
SELECT
    decile,
    count() AS scores,
    round(avg(score), 4) AS predicted,
    round(avg(churned), 4) AS observed
FROM
(
    SELECT
        s.score AS score,
        least(toUInt8(floor(s.score * 10)), 9) + 1 AS decile,
        -- the first activity after t (ASOF), churned unless there is one within the horizon
        NOT (ifNull(a.hit, 0) = 1 AND a.t_ms <= s.t_ms + s.h_ms) AS churned
    FROM
    (
        SELECT d.profile_id AS profile_id, d.t_ms AS t_ms, d.score AS score, hz.h_ms AS h_ms
        FROM
        (
            SELECT profile_id, toUnixTimestamp64Milli(max(ts)) AS t_ms, argMax(score, ts) AS score
            FROM {database}.scores FINAL
            WHERE model = {model:String} AND model_version > 0
            GROUP BY profile_id, toDate(ts, 'UTC')
        ) AS d
        CROSS JOIN
        (
            SELECT if(
                {horizon_s:UInt64} > 0,
                toInt64({horizon_s:UInt64}) * 1000,
                if(
                    length(gs) < 50,
                    toInt64(30 * 86400000),
                    toInt64(least(greatest(
                        {horizon_multiple:Float64}
                            * gs[toUInt64(greatest(1, ceil({horizon_quantile:Float64} * length(gs))))],
                        86400000.0), 365 * 86400000.0))
                )
            ) AS h_ms
            FROM
            (
                SELECT arraySort(groupArray(gap)) AS gs
                FROM
                (
                    SELECT arrayJoin(arrayFilter(
                        g -> g >= 86400000, arrayDifference(arraySort(groupArray(toUnixTimestamp64Milli(ts))))
                    )) AS gap
                    FROM {database}.events
                    WHERE origin != 'engine'
                        AND (empty({activity_types:Array(String)}) OR has({activity_types:Array(String)}, type))
                    GROUP BY profile_id
                )
            )
        ) AS hz
        WHERE d.t_ms + hz.h_ms < (
            SELECT toUnixTimestamp64Milli(max(ts)) FROM {database}.events WHERE origin != 'engine'
        )
    ) AS s
    ASOF LEFT JOIN
    (
        SELECT profile_id, toUnixTimestamp64Milli(ts) AS t_ms, toUInt8(1) AS hit
        FROM {database}.events
        WHERE origin != 'engine'
            AND (empty({activity_types:Array(String)}) OR has({activity_types:Array(String)}, type))
    ) AS a ON a.profile_id = s.profile_id AND a.t_ms > s.t_ms
)
GROUP BY decile
ORDER BY decile
