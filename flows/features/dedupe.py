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


class SeenIds:
    """The eventIds one profile sent recently; pure, picklable, bounded.

    The ids in arrival order are a plain list with a moving head (a deque costs ~600 bytes
    even when it holds one id; most profiles hold a few)."""

    __slots__ = ("_head", "_ids", "_order", "cap", "newest_ms", "ttl_ms")

    def __init__(self, ttl_ms: int, cap: int) -> None:
        self.ttl_ms = ttl_ms
        self.cap = cap
        self.newest_ms = 0
        self._ids: dict[str, int] = {}
        self._order: list[str] = []
        self._head = 0  # _order[:_head] is forgotten already

    def __len__(self) -> int:
        return len(self._ids)

    def first_time(self, event_id: str, ts_ms: int) -> bool:
        """True the first time an id is seen within the window; records it."""
        ids = self._ids
        if event_id in ids:
            return False
        ids[event_id] = ts_ms
        self._order.append(event_id)
        if ts_ms > self.newest_ms:
            self.newest_ms = ts_ms
        self._evict()
        return True

    def _evict(self) -> None:
        ids, order, head = self._ids, self._order, self._head
        horizon = self.newest_ms - self.ttl_ms
        while head < len(order):
            oldest = order[head]
            if len(ids) > self.cap or ids[oldest] < horizon:
                head += 1
                del ids[oldest]
            else:
                break
        if head and head * 2 >= len(order):  # compact: amortised O(1) per id
            del order[:head]
            head = 0
        self._head = head

    def __getstate__(self) -> tuple[int, int, int, dict[str, int], list[str]]:
        return self.ttl_ms, self.cap, self.newest_ms, dict(self._ids), self._order[self._head :]

    def __setstate__(self, state: tuple[int, int, int, dict[str, int], list[str]]) -> None:
        self.ttl_ms, self.cap, self.newest_ms, ids, order = state
        self._ids = dict(ids)
        self._order = list(order)
        self._head = 0
