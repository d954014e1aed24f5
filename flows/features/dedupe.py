"""eventId dedupe: a bounded memory of the ids a profile has sent.

Each profile remembers its eventIds for `ttl_ms` of event time behind the newest event
it sent, and at most `cap` of them (oldest forgotten first). A repeat inside that window
is dropped; a repeat after it gets through and is absorbed by the ``events`` table's
ReplacingMergeTree key. Memory per profile is therefore bounded by `cap`; a profile that
goes silent is dropped by the stage after ``dedupe.idle_evict_s`` (see `flows.dataflow.stages`).

>>> seen = SeenIds(ttl_ms=1000, cap=3)
>>> [seen.first_time(i, ts) for i, ts in [("a", 0), ("b", 10), ("a", 20)]]
[True, True, False]
>>> seen.first_time("c", 5000), seen.first_time("a", 5000)   # "a" has expired
(True, True)
"""

from __future__ import annotations

from typing import Any


class SeenIds:
    """The eventIds one profile sent recently; pure, picklable, bounded.

    One dict, id -> event time, in arrival order (a dict keeps insertion order, and an id
    is only ever inserted anew): the oldest is its first key. The oldest time is kept
    aside, so an event that expires nothing never walks the dict."""

    __slots__ = ("_ids", "_oldest_ms", "cap", "newest_ms", "ttl_ms")

    def __init__(self, ttl_ms: int = 0, cap: int = 0) -> None:
        self.ttl_ms = ttl_ms
        self.cap = cap
        self.newest_ms = 0
        self._ids: dict[str, int] = {}
        self._oldest_ms = 0  # the time of the first (oldest) id held

    def __len__(self) -> int:
        return len(self._ids)

    def first_time(self, event_id: str, ts_ms: int) -> bool:
        """True the first time an id is seen within the window; records it."""
        ids = self._ids
        if event_id in ids:
            return False
        if not ids:
            self._oldest_ms = ts_ms
        ids[event_id] = ts_ms
        if ts_ms > self.newest_ms:
            self.newest_ms = ts_ms
        if len(ids) > self.cap or self._oldest_ms < self.newest_ms - self.ttl_ms:
            self._evict()
        return True

    def _evict(self) -> None:
        ids = self._ids
        horizon = self.newest_ms - self.ttl_ms
        over = len(ids) - self.cap
        expired: list[str] = []
        oldest = 0
        for eid, ts in ids.items():
            if len(expired) < over or ts < horizon:
                expired.append(eid)
            else:
                oldest = ts
                break
        for eid in expired:
            del ids[eid]
        self._oldest_ms = oldest

    def __getstate__(self) -> tuple[int, int, int, dict[str, int]]:
        return self.ttl_ms, self.cap, self.newest_ms, self._ids

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.ttl_ms, self.cap, self.newest_ms, ids = state[:4]
        if len(state) > 4:  # snapshots that kept the arrival order in a list beside the dict
            ids = {i: ids[i] for i in state[4]}
        self._ids = dict(ids)
        self._oldest_ms = next(iter(self._ids.values()), 0)
