"""Hand-offs of profile state at a merge of two persons, through Redis.

Bytewax keeps each key's state to its own logic and a flow has no cycles, so the loser's
state travels to the winner's key through Redis: the loser's step writes it once under
the merge id (``SET NX``: a replay, which routes every record as before, cannot replace
what was handed off first), the winner's step reads it. A hand-off lives ``ttl_s``, long
enough for a restart's replay to read it again.
"""

from __future__ import annotations

import redis

from sinks.redis_store import REDIS_ERRORS, connect
from sinks.retry import RetryPolicy

PREFIX = "scrm:handoff:"


class HandOffs:
    """``put`` and ``get`` of one merge's hand-off; connection errors retried by the
    `RetryPolicy`, then raised (a hand-off is never dropped silently). The client is
    opened on first use, on the worker that uses it."""

    def __init__(self, url: str, timeout_s: float, retry: RetryPolicy, ttl_s: int) -> None:
        self._url = url
        self._timeout = timeout_s
        self._retry = retry
        self._ttl = ttl_s
        self._client: redis.Redis | None = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(self._url, self._timeout, own_retries=False, retry=self._retry)
        return self._client

    def put(self, merge_id: str, payload: bytes) -> bool:
        """Hand off `payload` under `merge_id`; False when a hand-off was there already."""
        key = PREFIX + merge_id
        done = self._retry.call(
            lambda: self._redis().set(key, payload, nx=True, ex=self._ttl),
            f"hand off state for merge {merge_id}",
            retry_on=REDIS_ERRORS,
        )
        return bool(done)

    def get(self, merge_id: str) -> bytes | None:
        """The hand-off of `merge_id`, None while there is none."""
        key = PREFIX + merge_id
        got = self._retry.call(
            lambda: self._redis().get(key), f"read the hand-off of merge {merge_id}", retry_on=REDIS_ERRORS
        )
        return got if got is None else bytes(got)  # type: ignore[arg-type]
