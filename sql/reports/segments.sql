-- report: segments
-- answers: How many profiles are in each RFM segment now, and how many moved between segments since a time.
-- param: since DateTime64(3) = '2000-01-01 00:00:00'
-- "now" is each profile's latest features snapshot; moves are the engine's segment_changed events.
SELECT kind, from_segment, to_segment, profiles
FROM
(
    SELECT 'size' AS kind, segment AS from_segment, '' AS to_segment, count() AS profiles
    FROM
    (
        SELECT profile_id, argMax(segment, ts) AS segment
        FROM {database}.features FINAL
        GROUP BY profile_id
    )
    GROUP BY segment
    UNION ALL
    SELECT 'move', JSONExtractString(props, 'from'), JSONExtractString(props, 'segment'), count()
    FROM {database}.events FINAL
    WHERE type = 'segment_changed' AND origin = 'engine' AND ts >= {since:DateTime64(3)}
    GROUP BY 2, 3
)
ORDER BY kind DESC, profiles DESC, from_segment, to_segment
