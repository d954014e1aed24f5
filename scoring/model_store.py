"""The sink that publishes model versions to Redis (``scrm:models:{name}``, see
`scoring.registry`) as they come, a few per minute; each write is retried, then the run
fails loudly."""

from __future__ import annotations

import functools

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.core.messages import ModelVersion
from scoring.learner import PublishedModel
from scoring.registry import write_version
from sinks.redis_store import REDIS_ERRORS, connect_checked
from sinks.retry import RetryPolicy


class RedisModelStore(DynamicSink[ModelVersion]):
    """Writes each published version to ``scrm:models:{name}`` at once (retried)."""

    def __init__(self, url: str, timeout_s: float, retry: RetryPolicy) -> None:
        self._url = url
        self._timeout = timeout_s
        self._retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ModelPartition:
        return _ModelPartition(
            connect_checked(self._url, self._timeout, self._retry, "Redis (models)"), self._retry
        )


class _ModelPartition(StatelessSinkPartition[ModelVersion]):
    def __init__(self, client: redis.Redis, retry: RetryPolicy) -> None:
        self._client = client
        self._retry = retry

    def write_batch(self, items: list[ModelVersion]) -> None:
        latest: dict[str, ModelVersion] = {}
        for v in items:
            if v.model not in latest or v.version >= latest[v.model].version:
                latest[v.model] = v
        for v in latest.values():
            pm = PublishedModel.from_bytes(v.blob)
            self._retry.call(
                functools.partial(write_version, self._client, pm),
                f"publish model {v.model} version {v.version}",
                retry_on=REDIS_ERRORS,
            )

    def close(self) -> None:
        self._client.close()
