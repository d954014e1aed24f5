-- report: churn_calibration
-- answers: Is the churn model calibrated: per score decile, the mean predicted probability against the share of those scores after which the profile showed no activity within the horizon.
-- chart: calibration
-- param: model String = 'churn'
-- param: horizon_s UInt64 = 2592000
-- param: activity_types Array(String) = ['signup', 'session_start', 'page_view', 'search', 'product_view', 'add_to_cart', 'remove_from_cart', 'checkout_started', 'order_created', 'order_paid', 'ticket_opened', 'message_opened', 'message_clicked', 'message_replied']
-- The label of config/models.toml ([model.label] kind = "inactivity"; keep `horizon_s` and
-- `activity_types` in step with it; [] = any customer event): a score of a profile at t is
-- observed churn (1) when the profile has no activity event (origin != 'engine', type in
-- `activity_types`) with t < ts <= t + horizon_s, else 0.
-- Sampled: each profile's last score of each UTC day (by score ts). Only scores whose
-- horizon has passed are counted: t + horizon_s < the latest customer event time in the
-- table (origin != 'engine'; the engine resolves label 1 the same way against its watermark).
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
        NOT (ifNull(a.hit, 0) = 1 AND a.t_ms <= s.t_ms + {horizon_s:UInt64} * 1000) AS churned
    FROM
    (
        SELECT profile_id, toUnixTimestamp64Milli(max(ts)) AS t_ms, argMax(score, ts) AS score
        FROM {database}.scores FINAL
        WHERE model = {model:String}
        GROUP BY profile_id, toDate(ts, 'UTC')
        HAVING t_ms + {horizon_s:UInt64} * 1000 < (
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
