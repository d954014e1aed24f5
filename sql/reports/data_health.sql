-- report: data_health
-- answers: What the engine refused and why, how much arrived too late, and how long events took from their own time to being stored.
-- param: since DateTime64(3) = '2000-01-01 00:00:00'
SELECT metric, key, value
FROM
(
    SELECT 'dead_letters' AS metric, reason AS key, toFloat64(count()) AS value
    FROM {database}.dead_letters FINAL
    WHERE received_at >= {since:DateTime64(3)}
    GROUP BY reason
    UNION ALL
    SELECT 'late_events', '', toFloat64(countIf(late = 1))
    FROM {database}.events FINAL
    WHERE origin != 'engine' AND ts >= {since:DateTime64(3)}
    UNION ALL
    SELECT 'event_to_ingest_s', q, v
    FROM
    (
        SELECT
            ['p50', 'p99', 'max'] AS qs,
            [
                quantileExact(0.5)(dateDiff('millisecond', ts, ingested_at)) / 1000,
                quantileExact(0.99)(dateDiff('millisecond', ts, ingested_at)) / 1000,
                max(dateDiff('millisecond', ts, ingested_at)) / 1000
            ] AS vs
        FROM {database}.events FINAL
        WHERE origin != 'engine' AND ts >= {since:DateTime64(3)}
    )
    ARRAY JOIN qs AS q, vs AS v
)
ORDER BY metric, key
