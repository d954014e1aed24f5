-- report: retention
-- answers: Weekly cohorts by the week of each profile's first event: how many of the cohort were active N weeks later.
-- chart: heatmap
-- param: weeks UInt32 = 8
-- Weeks start on Monday (toMonday); week 0 is the cohort's own week.
SELECT
    cohort,
    week,
    active,
    max(active) OVER (PARTITION BY cohort) AS cohort_size,
    round(active / cohort_size, 4) AS share
FROM
(
    SELECT f.cohort AS cohort, dateDiff('week', f.cohort, a.week) AS week, count() AS active
    FROM
    (
        SELECT profile_id, toMonday(min(ts)) AS cohort
        FROM {database}.events FINAL
        WHERE origin != 'engine'
        GROUP BY profile_id
    ) AS f
    INNER JOIN
    (
        SELECT DISTINCT profile_id, toMonday(ts) AS week
        FROM {database}.events FINAL
        WHERE origin != 'engine'
    ) AS a ON a.profile_id = f.profile_id
    WHERE week < {weeks:UInt32}
    GROUP BY cohort, week
)
ORDER BY cohort, week
