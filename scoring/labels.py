"""Delayed labels: observations wait here until the stream says what happened after them.

Pure and clock-free: event times and a watermark go in, labelled examples come out.

**Inactivity** (churn). An observation of a profile at ``t0`` gets label 0 when activity
at some ``t`` with ``t0 < t <= t0 + horizon`` is reported, else 1; either way it comes out
when the watermark (stream time minus the allowed lateness) passes ``t0 + horizon`` — so a
profile that went silent resolves too, also in a full-speed replay, because the watermark
moves with every other profile's events. Each observation keeps the horizon it was added
with (an automatic horizon moves as it is learned).

Why a label 0 known early still waits for its horizon: the model then learns its examples
in the order they were observed. Released at the activity, the 0s of recent observations
would reach the learner beside the 1s of observations a horizon older, and an online model
(which weighs its latest examples most) would learn "recent = loyal, old = churned": on
the CDNOW history, where every customer's age grows with the calendar, that alone cost
0.04 of ROC AUC. The price is memory: an observation waits its horizon either way.

**Outcome** (win). Every observation of an entity waits for its close; the close labels all
of them at once (1 for a positive close, 0 for a negative one). Entities still open
``max_open`` after their first observation are dropped, unlabelled.

Both are bounded: beyond ``max_pending`` waiting observations the oldest are dropped and
counted (``dropped``), never learned with a guessed label.

>>> q = InactivityLabels(horizon_ms=100, max_pending=10)
>>> q.add("p1", 0, "a"); q.add("p2", 0, "b"); q.add("p1", 50, "c")
>>> q.activity("p1", (60,))          # p1 came back at 60: both its observations are 0s ...
[]
>>> q.advance(99), q.advance(101)    # ... out at their horizon, with p2's silence (a 1)
([], [('a', 0), ('b', 1)])
>>> q.advance(151)
[('c', 0)]
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import Any

Labelled = tuple[Any, int]


class InactivityLabels:
    __slots__ = ("_heap", "_pending", "dropped", "horizon_ms", "max_pending", "size")

    def __init__(self, horizon_ms: int, max_pending: int) -> None:
        self.horizon_ms = horizon_ms
        self.max_pending = max_pending
        # profile -> (t0, horizon, payload, label so far), in t0 order
        self._pending: dict[str, deque[tuple[int, int, Any, int]]] = {}
        self._heap: list[tuple[int, str]] = []  # (t0 + horizon, profile); stale entries skipped
        self.size = 0
        self.dropped = 0

    def add(self, profile_id: str, t0: int, payload: Any, horizon_ms: int = 0) -> None:
        h = horizon_ms or self.horizon_ms
        q = self._pending.get(profile_id)
        if q is None:
            q = self._pending[profile_id] = deque()
        if q and t0 < q[-1][0]:  # keep each profile's queue in time order (rare: late observation)
            items = sorted([*q, (t0, h, payload, 1)], key=lambda it: it[0])
            q.clear()
            q.extend(items)
        else:
            q.append((t0, h, payload, 1))
        heapq.heappush(self._heap, (t0 + h, profile_id))
        self.size += 1
        while self.size > self.max_pending:
            self._drop_oldest()

    def activity(self, profile_id: str, times: Iterable[int]) -> list[Labelled]:
        """Label 0 every observation of the profile that one of `times` falls after, within
        the horizon; they come out at their horizon (`advance`), so this returns []."""
        q = self._pending.get(profile_id)
        if not q:
            return []
        ts = sorted(times)
        for i, (t0, h, payload, y) in enumerate(q):
            if y and any(t0 < t <= t0 + h for t in ts):
                q[i] = (t0, h, payload, 0)
        return []

    def advance(self, watermark_ms: int) -> list[Labelled]:
        """Every observation whose horizon ended before `watermark_ms`, with its label
        (1 unless activity within the horizon was reported)."""
        out: list[Labelled] = []
        heap = self._heap
        while heap and heap[0][0] < watermark_ms:
            _, pid = heapq.heappop(heap)
            q = self._pending.get(pid)
            if not q:
                continue
            keep = [it for it in q if it[0] + it[1] >= watermark_ms]
            if len(keep) < len(q):
                out.extend((it[2], it[3]) for it in q if it[0] + it[1] < watermark_ms)
                self.size -= len(q) - len(keep)
                if keep:
                    self._pending[pid] = deque(keep)
                else:
                    del self._pending[pid]
        return out

    def _drop_oldest(self) -> None:
        while self._heap:
            _, pid = heapq.heappop(self._heap)
            q = self._pending.get(pid)
            if q:
                q.popleft()
                self.size -= 1
                self.dropped += 1
                if not q:
                    del self._pending[pid]
                return


class OutcomeLabels:
    """Observations per entity until it closes. `max_open_ms` after an entity's first
    observation (in watermark time) its observations are dropped."""

    __slots__ = ("_heap", "_pending", "dropped", "max_open_ms", "max_pending", "size")

    def __init__(self, max_open_ms: int, max_pending: int) -> None:
        self.max_open_ms = max_open_ms
        self.max_pending = max_pending
        self._pending: dict[str, tuple[int, list[Any]]] = {}
        self._heap: list[tuple[int, str]] = []
        self.size = 0
        self.dropped = 0

    def add(self, entity_id: str, t0: int, payload: Any) -> None:
        got = self._pending.get(entity_id)
        if got is None:
            self._pending[entity_id] = (t0, [payload])
            heapq.heappush(self._heap, (t0 + self.max_open_ms, entity_id))
        else:
            got[1].append(payload)
        self.size += 1
        while self.size > self.max_pending and self._heap:
            self._expire(heapq.heappop(self._heap)[1], force=True)

    def close(self, entity_id: str, label: int) -> list[Labelled]:
        got = self._pending.pop(entity_id, None)
        if got is None:
            return []
        self.size -= len(got[1])
        return [(p, label) for p in got[1]]

    def advance(self, watermark_ms: int) -> list[Labelled]:
        heap = self._heap
        while heap and heap[0][0] < watermark_ms:
            self._expire(heapq.heappop(heap)[1], force=False, watermark_ms=watermark_ms)
        return []

    def _expire(self, entity_id: str, force: bool, watermark_ms: int = 0) -> None:
        got = self._pending.get(entity_id)
        if got is None:
            return
        if force or got[0] + self.max_open_ms < watermark_ms:
            del self._pending[entity_id]
            self.size -= len(got[1])
            self.dropped += len(got[1])
