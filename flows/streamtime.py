"""Stream time: the engine's "now" in event time, shared by every worker of a process.

Bytewax wakes a key only for its own items or its own (wall-clock) timer, yet a silent
profile's windows must still move when time passes, in live runs and in full-speed
replays alike. The one mechanism for that: the parse stage feeds every accepted event
time into a `StreamClock`; a profile woken by its timer reads ``now_ms()`` and computes
its windows as of that event time. In a live run stream time follows the wall clock; in
a replay it follows the replayed history, however fast.

It is the newest event time seen, but never ahead of the wall clock plus
``max_skew_ms``, so one producer with a wrong clock cannot drag every window forward.
Each process has its own clock (fed by the partitions it reads); with partitions of one
topic the clocks of a cluster's processes stay close.

>>> c = StreamClock(max_skew_ms=1000, wall=lambda: 100.0)
>>> c.now_ms()
-1
>>> c.observe(50_000); c.observe(40_000); c.now_ms()
50000
>>> c.observe(10**12); c.now_ms()   # a clock far in the future is capped at wall + skew
101000
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StreamClock:
    __slots__ = ("_max", "_skew", "_wall")

    def __init__(self, max_skew_ms: int = 60_000, wall: Callable[[], float] = time.time) -> None:
        self._max = -1
        self._skew = max_skew_ms
        self._wall = wall

    def observe(self, ts_ms: int) -> None:
        # A plain max under the GIL: a lost race only delays the clock by one batch.
        if ts_ms > self._max:
            self._max = ts_ms

    def now_ms(self) -> int:
        if self._max < 0:
            return -1
        return min(self._max, int(self._wall() * 1000) + self._skew)
