"""The complaint circuit breaker: a journey whose complaint rate passes a threshold is
paused automatically (running instances hold, no one enters) until someone resumes it
(``scrm journeys resume ID``).

Counts live in Redis, so every worker and process adds to the same numbers::

    scrm:breaker:{<journey id>}   hash  s:<bucket> -> sends, c:<bucket> -> complaints
                                         (bucket = event time // (window / 24); TTL 2 windows)

A complaint is charged to the journey that last sent the template it names (else the last
one that messaged the profile; `rules.runtime`). After every batch, each journey that got a
complaint is checked: over the last ``window`` of event time, with at least ``min_sends``
sends, ``complaints / sends > max_complaint_rate`` trips it. These are rates, not caps, so
plain counters suffice (no script); the pause itself is `rules.store.set_state`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from flows.core.durations import parse_duration
from rules import store
from sinks.redis_store import REDIS_ERRORS, RedisClient, text
from sinks.retry import RetryPolicy

log = logging.getLogger("scrm.breaker")
BUCKETS = 24


def breaker_key(journey_id: str) -> str:
    """The journey's counters (the braces are a Redis Cluster hash tag).

    >>> breaker_key("cart_abandoned")
    'scrm:breaker:{cart_abandoned}'
    """
    return f"scrm:breaker:{{{journey_id}}}"


@dataclass(frozen=True)
class Trip:
    journey_id: str
    complaints: int
    sends: int
    ts_ms: int


class Breaker:
    def __init__(
        self, client: RedisClient, max_rate: float, window: str, min_sends: int, retry: RetryPolicy
    ) -> None:
        self._client = client
        self._max_rate = max_rate
        self._window_ms = parse_duration(window)
        self._bucket_ms = max(1, self._window_ms // BUCKETS)
        self._min_sends = min_sends
        self._retry = retry

    def record(self, sends: Iterable[tuple[str, int]], complaints: Iterable[tuple[str, int]]) -> list[Trip]:
        """Add (journey, event time) sends and complaints; returns the journeys it paused."""
        sends, complaints = list(sends), list(complaints)
        if not sends and not complaints:
            return []

        def _count() -> None:
            pipe = self._client.pipeline(transaction=False)
            for kind, items in (("s", sends), ("c", complaints)):
                for jid, ts in items:
                    key = breaker_key(jid)
                    pipe.hincrby(key, f"{kind}:{ts // self._bucket_ms}", 1)
                    pipe.pexpire(key, 2 * self._window_ms)
            pipe.execute()

        self._retry.call(_count, "count sends and complaints for the breaker", retry_on=REDIS_ERRORS)
        trips: list[Trip] = []
        newest: dict[str, int] = {}
        for jid, ts in complaints:
            newest[jid] = max(ts, newest.get(jid, 0))
        for jid, ts in newest.items():
            trip = self._check(jid, ts)
            if trip is not None:
                trips.append(trip)
        return trips

    def _check(self, jid: str, now_ms: int) -> Trip | None:
        raw = self._retry.call(lambda: self._client.hgetall(breaker_key(jid)), "read breaker counts")
        first = now_ms // self._bucket_ms - BUCKETS + 1
        sent = complained = 0
        for field, value in raw.items():
            kind, _, bucket = text(field).partition(":")
            if int(bucket) >= first:
                if kind == "s":
                    sent += int(value)
                else:
                    complained += int(value)
        if sent < self._min_sends or complained <= self._max_rate * sent:
            return None
        entry = store.index(self._client).get(jid)
        if entry is None or entry.state != "enabled":
            return None
        store.set_state(self._client, jid, "paused")
        log.warning(
            "breaker: journey %s paused: %d complaints on %d sends in the last %d h (> %.1f %%); "
            "resume with `scrm journeys resume %s`",
            jid, complained, sent, self._window_ms // 3_600_000, 100 * self._max_rate, jid,
        )  # fmt: skip
        return Trip(jid, complained, sent, now_ms)
