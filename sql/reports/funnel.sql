-- report: funnel
-- answers: How many profiles did the steps in order, each within `window_s` of the first, the conversion from the first step, and the median seconds from the previous step; optionally split by source or segment.
-- chart: bar
-- param: steps Array(String) = ['session_start', 'product_view', 'add_to_cart', 'checkout_started', 'order_paid']
-- param: window_s UInt64 = 86400
-- param: since DateTime64(3) = '2000-01-01 00:00:00'
-- param: until DateTime64(3) = '2100-01-01 00:00:00'
-- param: split_by String = ''
-- Up to 8 steps, over the customers' own events (origin != 'engine') in [since, until).
-- profiles: ClickHouse windowFunnel (default mode, times in whole seconds) per profile;
--   conversion = profiles / the profiles at step 1, within the split. A split (or, unsplit,
--   the report) with nobody at step 1 has no rows.
-- split_by: '' (one split, split = ''), 'source' (the source of the profile's first step-1
--   event in the range, first by (ts, event_id)) or 'segment' (the segment of the profile's
--   latest `features` row at or before `until`; '' when there is none).
-- median_s_from_previous: over the profiles that reached step k (k >= 2), the median
--   (exact, interpolated: quantileExactInclusive(0.5)) of the seconds between their step k-1
--   and step k in the profile's chain; NULL for step 1 and for a step nobody reached.
--   The chain: the step events in time order (whole seconds, ties by step number; an event
--   matching several steps counts once per step); from a step-1 event, take greedily the
--   first step-2 event after it, then the first step-3 event after that, ..., every one
--   within `window_s` of the step-1 event. Of the step-1 events, the earliest whose chain is
--   longest is used; that length is windowFunnel's level, so the medians are over exactly
--   the profiles counted. Cost per profile: (step-1 events) x (step events within window_s).
SELECT
    step,
    {steps:Array(String)}[step] AS event_type,
    countIf(level >= step) AS profiles,
    round(profiles / max(countIf(level >= 1)) OVER (PARTITION BY split), 4) AS conversion,
    if(
        step = 1 OR profiles = 0,
        NULL,
        quantileExactInclusiveIf(0.5)(
            toInt64(chain[step]) - toInt64(chain[greatest(step - 1, 1)]), level >= step
        )
    ) AS median_s_from_previous,
    split
FROM
(
    SELECT
        f.level AS level,
        arrayFilter(j -> f.pairs[j].2 = 1, arrayEnumerate(f.pairs)) AS starts,
        -- per start j, how many pairs are at or before its time + window_s: a running count
        -- over the pairs merged with those bounds (pairs sort first on a tie)
        arraySort(arrayConcat(
            arrayMap(p -> (toUInt64(p.1), 0), f.pairs),
            arrayMap(j -> (f.pairs[j].1 + {window_s:UInt64}, 1), starts)
        )) AS merged,
        arrayFilter((n, m) -> m.2 = 1, arrayCumSum(m -> m.2 = 0, merged), merged) AS ends,
        arrayMap(
            (j, e) -> arrayFold(
                (acc, p) -> if(
                    length(acc) < least(length({steps:Array(String)}), 8) AND p.2 = length(acc) + 1,
                    arrayPushBack(acc, p.1),
                    acc
                ),
                arraySlice(f.pairs, j + 1, e - j),
                [f.pairs[j].1]
            ),
            starts, ends
        ) AS chains,
        chains[indexOf(arrayMap(c -> length(c), chains), arrayMax(c -> length(c), chains))] AS chain,
        multiIf(
            {split_by:String} = '', '',
            {split_by:String} = 'source', f.first_source,
            {split_by:String} = 'segment', ifNull(s.segment, ''),
            toString(throwIf(1, 'split_by must be one of: (empty), source, segment'))
        ) AS split
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
            ) AS level,
            -- (second, step number) of every step event, sorted: the chains' input
            arraySort(groupArrayArray(arrayMap(
                i -> (toUInt32(toDateTime(ts)), toUInt8(i)),
                arrayFilter(
                    i -> {steps:Array(String)}[i] = type,
                    range(1, least(length({steps:Array(String)}), 8) + 1)
                )
            ))) AS pairs,
            toString(argMinIf(source, (ts, event_id), type = {steps:Array(String)}[1])) AS first_source
        FROM {database}.events FINAL
        WHERE origin != 'engine' AND ts >= {since:DateTime64(3)} AND ts < {until:DateTime64(3)}
            AND has({steps:Array(String)}, type)
        GROUP BY profile_id
        HAVING level >= 1
    ) AS f
    LEFT JOIN
    (
        SELECT profile_id, toString(argMax(segment, ts)) AS segment
        FROM {database}.features FINAL
        WHERE {split_by:String} = 'segment' AND ts <= {until:DateTime64(3)}
        GROUP BY profile_id
    ) AS s ON s.profile_id = f.profile_id
)
ARRAY JOIN range(1, length({steps:Array(String)}) + 1) AS step
GROUP BY split, step
ORDER BY split, step
