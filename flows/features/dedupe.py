"""eventId dedupe: a bounded memory of the ids a profile has sent.

Each profile remembers its eventIds for `ttl_ms` of event time behind the newest event
it sent (up to a sixteenth longer: expiry runs in steps), and at most `cap` of them (the
oldest forgotten first, a sixteenth of the cap at once). A repeat inside that window is
dropped; a repeat after it gets through and is absorbed by the ``events`` table's
ReplacingMergeTree key. Memory per profile is therefore bounded by `cap`; a profile that
goes silent is dropped by the stage after ``dedupe.idle_evict_s`` (see `flows.dataflow.stages`).

Ids are held as 64-bit digests (`flows.core.digests.id64`), not as strings: 16 bytes per
id (digest and time) in one flat array, where a dict of strings held about 120. A memory
restored from a snapshot that held `key64` digests is looked up under both until its ids
have left the window.

>>> seen = SeenIds(ttl_ms=1000, cap=3)
>>> [seen.first_time(i, ts) for i, ts in [("a", 0), ("b", 10), ("a", 20)]]
[True, True, False]
>>> seen.first_time("c", 5000), seen.first_time("a", 5000)   # "a" has expired
(True, True)
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any

from flows.core.digests import id64, key64


class SeenIds:
    """The eventIds one profile sent recently; pure, picklable, bounded.

    One ``array('q')``: the digests of the ids held, sorted (a lookup is a bisection),
    then their times in the same order. The oldest time is kept aside, so an event that
    expires nothing never walks them; expiry rebuilds the array, so it runs in steps (a
    sixteenth of the window or of the cap at once) and costs O(1) per event over time."""

    __slots__ = ("_held", "_legacy_ms", "_oldest_ms", "cap", "newest_ms", "ttl_ms")

    def __init__(self, ttl_ms: int = 0, cap: int = 0) -> None:
        self.ttl_ms = ttl_ms
        self.cap = cap
        self.newest_ms = 0
        self._held: Any = array("q")  # n sorted digests, then their n times
        self._oldest_ms = 0  # the oldest time held
        self._legacy_ms = -1  # while newest_ms <= this, ids may be held as `key64` digests

    def __len__(self) -> int:
        return len(self._held) >> 1

    def first_time(self, event_id: str, ts_ms: int) -> bool:
        """True the first time an id is seen within the window; records it."""
        key = id64(event_id)
        held = self._held
        n = len(held) >> 1
        i = bisect_left(held, key, 0, n)
        if i < n and held[i] == key:
            return False
        if self._legacy_ms >= 0 and self._held_as_legacy(event_id):
            return False
        if n == 0 or ts_ms < self._oldest_ms:
            self._oldest_ms = ts_ms
        held.insert(n + i, ts_ms)  # the time first: inserting the key moves it into place
        held.insert(i, key)
        if ts_ms > self.newest_ms:
            self.newest_ms = ts_ms
        if n >= self.cap or self._oldest_ms < self.newest_ms - self.ttl_ms - (self.ttl_ms >> 4):
            self._evict()
        return True

    def _held_as_legacy(self, event_id: str) -> bool:
        """Whether `event_id` is held under its `key64` digest (a memory restored from a
        snapshot from before `id64`), while such ids can still be in the window."""
        if self.newest_ms > self._legacy_ms:
            self._legacy_ms = -1
            return False
        key = key64(event_id)
        held = self._held
        n = len(held) >> 1
        i = bisect_left(held, key, 0, n)
        return i < n and held[i] == key

    def absorb(self, other: SeenIds) -> None:
        """Remember `other`'s ids too (a merge of two persons: a repeat under either is
        one), each at its earlier time; then the window and the cap as usual."""
        self.newest_ms = max(self.newest_ms, other.newest_ms)
        if not len(other):
            return
        self._legacy_ms = max(self._legacy_ms, other._legacy_ms)
        times: dict[int, int] = {}
        for held in (self._held, other._held):
            n = len(held) >> 1
            for j in range(n):
                key, ts = held[j], held[n + j]
                if key not in times or ts < times[key]:
                    times[key] = ts
        keys = sorted(times)
        self._held = array("q", keys + [times[k] for k in keys])
        self._oldest_ms = min(times.values())
        if len(keys) > self.cap or self._oldest_ms < self.newest_ms - self.ttl_ms:
            self._evict()

    def _evict(self) -> None:
        """Forget the ids behind the window, then the oldest while over the cap (down to
        a sixteenth below it)."""
        held = self._held
        n = len(held) >> 1
        horizon = self.newest_ms - self.ttl_ms
        keep = [j for j in range(n) if held[n + j] >= horizon]
        if len(keep) > self.cap:
            keep.sort(key=lambda j: held[n + j])
            keep = sorted(keep[len(keep) - (self.cap - (self.cap >> 4)) :])
        times = [held[n + j] for j in keep]
        self._held = array("q", [held[j] for j in keep] + times)
        self._oldest_ms = min(times, default=0)

    def __getstate__(self) -> tuple[int, int, int, Any, int]:
        return self.ttl_ms, self.cap, self.newest_ms, self._held, self._legacy_ms

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.ttl_ms, self.cap, self.newest_ms, held = state[:4]
        self._legacy_ms = -1
        if isinstance(held, dict):  # snapshots that held the ids themselves, id -> time
            pairs = sorted((id64(eid), ts) for eid, ts in held.items())
            held = array("q", [k for k, _ in pairs] + [ts for _, ts in pairs])
        elif len(state) > 4:
            self._legacy_ms = state[4]
        elif held:  # `key64` digests: they can be in the window until a ttl past the newest
            self._legacy_ms = self.newest_ms + self.ttl_ms + (self.ttl_ms >> 4)
        self._held = held
        n = len(held) >> 1
        self._oldest_ms = min(held[n:], default=0)
