"""Latest scores in Redis, for journeys and external services, and the published models.

Layout::

    scrm:score:{<profileId>}      hash, hash-tagged for Redis Cluster
        <model>                   latest score of a profile model ("0.8123")
        <model>:version           model version that produced it
        <model>:as_of             event time (epoch ms) of its inputs
        <model>:<entityId>        latest score of an opportunity model for that opportunity
        <model>:<entityId>:as_of
    TTL: models.redis_ttl_s, refreshed with every write

Scores are buffered (bounded), coalesced per field and written one pipeline per flush,
retried with backoff while Redis is unreachable, then the run fails loudly (``SinkError``).
Published model versions are written by `scoring.model_store`.
"""

from __future__ import annotations

import time

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.core import metrics
from flows.core.messages import Score
from sinks.batching import BatchBuffer
from sinks.redis_store import REDIS_ERRORS, connect_checked
from sinks.retry import RetryPolicy

KEY_PREFIX = "scrm:score:"


def score_key(profile_id: str) -> str:
    """The Redis key (the braces are a Redis Cluster hash tag).

    >>> score_key("p42")
    'scrm:score:{p42}'
    """
    return f"{KEY_PREFIX}{{{profile_id}}}"


def score_fields(s: Score) -> dict[str, str | int]:
    """The hash fields one score sets.

    >>> score_fields(Score("churn", "p1", "p1", 0.25, 3, 1000, (), 0))
    {'churn': '0.25', 'churn:version': 3, 'churn:as_of': 1000}
    >>> score_fields(Score("win", "op7", "p1", 0.5, 2, 1000, (), 0))
    {'win:op7': '0.5', 'win:op7:version': 2, 'win:op7:as_of': 1000}
    """
    base = s.model if s.entity_id == s.profile_id else f"{s.model}:{s.entity_id}"
    return {base: repr(round(s.score, 6)), f"{base}:version": s.version, f"{base}:as_of": s.as_of_ms}


class RedisScoreStore(DynamicSink[Score]):
    def __init__(
        self, url: str, ttl_s: int, timeout_s: float, retry: RetryPolicy,
        flush_interval_s: float = 0.1, flush_rows: int = 5000, max_rows: int = 100_000,
    ) -> None:  # fmt: skip
        self._url = url
        self._ttl_ms = ttl_s * 1000
        self._timeout = timeout_s
        self._retry = retry
        self._flush = (flush_rows, flush_interval_s, max_rows)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ScorePartition:
        client = connect_checked(self._url, self._timeout, self._retry, "Redis (scores)")
        return _ScorePartition(client, self._ttl_ms, self._retry, self._flush)


class _ScorePartition(StatelessSinkPartition[Score]):
    def __init__(
        self, client: redis.Redis, ttl_ms: int, retry: RetryPolicy, flush: tuple[int, float, int]
    ) -> None:
        self._client = client
        self._ttl_ms = ttl_ms
        self._retry = retry
        self._rows = metrics.SINK_ROWS.labels(sink="redis:scores")
        self._seconds = metrics.SINK_WRITE_SECONDS.labels(sink="redis:scores")
        self._retries = metrics.SINK_RETRIES.labels(sink="redis:scores")
        rows, interval, max_rows = flush
        self._buffer: BatchBuffer[Score] = BatchBuffer("redis:scores", self._write, rows, interval, max_rows)

    def write_batch(self, items: list[Score]) -> None:
        self._buffer.add(items)

    def flush(self) -> None:
        self._buffer.flush()

    def _write(self, items: list[Score]) -> None:
        per_profile: dict[str, dict[str, str | int]] = {}
        counts: dict[str, int] = {}
        for s in items:  # later scores win field by field
            per_profile.setdefault(s.profile_id, {}).update(score_fields(s))
            counts[s.model] = counts.get(s.model, 0) + 1
        started = time.perf_counter()

        def _once() -> None:
            pipe = self._client.pipeline(transaction=False)
            for pid, mapping in per_profile.items():
                key = score_key(pid)
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                pipe.pexpire(key, self._ttl_ms)
            try:
                pipe.execute()
            except redis.RedisError:
                self._retries.inc()
                raise

        self._retry.call(_once, f"write {len(per_profile)} profiles' scores", retry_on=REDIS_ERRORS)
        self._seconds.observe(time.perf_counter() - started)
        self._rows.inc(len(per_profile))
        for model, n in counts.items():
            metrics.SCORES.labels(model=model).inc(n)

    def close(self) -> None:
        try:
            self._buffer.close()
        finally:
            self._client.close()
