"""The online feature store in Redis: one hash per profile, written in pipelined batches.

Layout (external services read it directly)::

    scrm:features:{<profileId>}      hash, hash-tagged for Redis Cluster
        <feature name>  -> value as a decimal string ("3", "129.5")
        as_of           -> event time (epoch ms) the values hold for
        tags            -> the profile's auto-tags, comma-separated ("active,high_value")
        segment         -> RFM segment ("champions", ...; "prospect" before a first order)
        rfm_r/rfm_f/rfm_m -> RFM scores 1-5 (0 before a first order), as of their last update
    TTL: features.redis_ttl_s, refreshed with every full write (the first one, and every
         features.snapshot_interval_s of event time): profiles gone quiet disappear

A feature without a value (an ``avg`` with nothing to average, ...) is absent from the
hash. Updates write only the fields that may have changed (the features the new events
touched, those that move with time, windows that crossed a bucket edge); every
``features.snapshot_interval_s`` of event time the whole map is written again.

Delivery: at-least-once and idempotent (a replay writes the same values); each
batch is one pipeline, retried with backoff while Redis is unreachable, then the run
fails loudly (``SinkError``).
"""

from __future__ import annotations

import time

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.core import metrics
from flows.core.messages import FeatureUpdate
from sinks.batching import BatchBuffer
from sinks.redis_store import REDIS_ERRORS, connect_checked
from sinks.retry import RetryPolicy

KEY_PREFIX = "scrm:features:"


def feature_key(profile_id: str) -> str:
    """The hash of one profile; the braces are a Redis Cluster hash tag.

    >>> feature_key("p42")
    'scrm:features:{p42}'
    """
    return f"{KEY_PREFIX}{{{profile_id}}}"


def coalesce(updates: list[FeatureUpdate]) -> list[FeatureUpdate]:
    """One update per profile, writing what the updates written in order would: later
    values win field by field, removals are kept unless a later update gave the field a
    value again, and ``as_of`` is the last update's (not the greatest: an event's update
    is as of its own time, which may be before a timer's refresh just ahead of it)."""
    merged: dict[str, FeatureUpdate] = {}
    for u in updates:
        prev = merged.get(u.profile_id)
        if prev is None:
            merged[u.profile_id] = u
            continue
        values = {**prev.values, **u.values}
        removed = (set(prev.removed) - set(u.values)) | set(u.removed)
        for name in u.removed:
            values.pop(name, None)
        merged[u.profile_id] = u._replace(
            values=values,
            removed=tuple(sorted(removed)),
            as_of_ms=u.as_of_ms,
            full=u.full if u.full is not None else prev.full,
            tags=u.tags if u.tags is not None else prev.tags,
            segment=u.segment if u.segment is not None else prev.segment,
        )
    return list(merged.values())


class RedisFeatureStore(DynamicSink[FeatureUpdate]):
    """Writes feature updates to ``scrm:features:{profileId}`` hashes (see module docstring).

    Updates are buffered (bounded, like the ClickHouse sink) and flushed by size or age,
    coalesced per profile, as one pipeline per flush.
    """

    def __init__(
        self,
        url: str,
        ttl_s: int,
        timeout_s: float,
        retry: RetryPolicy,
        flush_interval_s: float = 0.1,
        flush_rows: int = 5000,
        max_rows: int = 100_000,
    ) -> None:
        self._url = url
        self._ttl_ms = ttl_s * 1000
        self._timeout = timeout_s
        self._retry = retry
        self._flush = (flush_rows, flush_interval_s, max_rows)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        client = connect_checked(self._url, self._timeout, self._retry, "the Redis feature store")
        return _StorePartition(client, self._ttl_ms, self._retry, self._flush)


class _StorePartition(StatelessSinkPartition[FeatureUpdate]):
    def __init__(
        self, client: redis.Redis, ttl_ms: int, retry: RetryPolicy, flush: tuple[int, float, int]
    ) -> None:
        self._client = client
        self._ttl_ms = ttl_ms
        self._retry = retry
        self._rows = metrics.SINK_ROWS.labels(sink="redis:features")
        self._seconds = metrics.SINK_WRITE_SECONDS.labels(sink="redis:features")
        self._retries = metrics.SINK_RETRIES.labels(sink="redis:features")
        rows, interval, max_rows = flush
        self._buffer: BatchBuffer[FeatureUpdate] = BatchBuffer(
            "redis:features", self._write, rows, interval, max_rows
        )

    def write_batch(self, items: list[FeatureUpdate]) -> None:
        self._buffer.add(items)

    def flush(self) -> None:
        """Write everything buffered now (a Bytewax snapshot waits for this)."""
        self._buffer.flush()

    def _write(self, items: list[FeatureUpdate]) -> None:
        updates = coalesce(items)
        started = time.perf_counter()

        def _once() -> None:
            pipe = self._client.pipeline(transaction=False)
            for u in updates:
                key = feature_key(u.profile_id)
                mapping: dict[str, float | int | str] = dict(u.values)
                mapping["as_of"] = u.as_of_ms
                if u.tags is not None:
                    mapping["tags"] = ",".join(u.tags)
                if u.segment is not None:
                    mapping["segment"] = u.segment
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                if u.removed:
                    pipe.hdel(key, *u.removed)
                if u.full is not None:  # refreshed with every snapshot: enough, and half the commands
                    pipe.pexpire(key, self._ttl_ms)
            try:
                pipe.execute()
            except redis.RedisError:
                self._retries.inc()
                raise

        self._retry.call(_once, f"write {len(updates)} profiles to the feature store", retry_on=REDIS_ERRORS)
        self._seconds.observe(time.perf_counter() - started)
        self._rows.inc(len(updates))
        metrics.FEATURE_UPDATES.labels(store="redis").inc(len(updates))

    def close(self) -> None:
        try:
            self._buffer.close()
        finally:
            self._client.close()
