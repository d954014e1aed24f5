-- report: calibration
-- answers: Is the win model calibrated: per score decile, the mean predicted probability against the share of those opportunities that were won.
-- chart: calibration
-- param: model String = 'win'
-- Each opportunity's last score before it closed; opportunities still open are left out.
-- For outcome models (label kind "outcome"); the churn model's is the churn_calibration report.
SELECT
    decile,
    count() AS opportunities,
    round(avg(score), 4) AS predicted,
    round(avg(won), 4) AS observed
FROM
(
    SELECT
        s.entity_id,
        s.score AS score,
        o.won AS won,
        least(toUInt8(floor(s.score * 10)), 9) + 1 AS decile
    FROM
    (
        SELECT entity_id, argMax(score, ts) AS score
        FROM {database}.scores FINAL
        WHERE model = {model:String}
        GROUP BY entity_id
    ) AS s
    INNER JOIN
    (
        SELECT JSONExtractString(props, 'opportunityId') AS entity_id, max(type = 'opportunity_won') AS won
        FROM {database}.events FINAL
        WHERE type IN ('opportunity_won', 'opportunity_lost')
        GROUP BY entity_id
    ) AS o ON o.entity_id = s.entity_id
)
GROUP BY decile
ORDER BY decile
