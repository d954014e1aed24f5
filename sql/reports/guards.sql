-- report: guards
-- answers: How many journey decisions were sent, capped, suppressed, deferred, deduped ..., by journey and channel.
-- chart: bar
-- param: since DateTime64(3) = '2000-01-01 00:00:00'
SELECT journey_id, channel, status, count() AS decisions
FROM {database}.actions FINAL
WHERE ts >= {since:DateTime64(3)}
GROUP BY journey_id, channel, status
ORDER BY journey_id, channel, decisions DESC, status
