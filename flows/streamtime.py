"""Stream time: the engine's "now" in event time, shared by every worker of a process.

Bytewax wakes a key only for its own items or its own (wall-clock) timer, yet a silent
profile's windows must still move when time passes, in live runs and in full-speed
replays alike. The one mechanism for that: the parse stage feeds every accepted event
time into a `StreamClock`; a profile woken by its timer reads ``now_ms()`` and computes
its windows as of that event time. In a live run stream time follows the wall clock; in
a replay it follows the replayed history, however fast.

It is the newest event time seen, but never ahead of the wall clock plus
``max_skew_ms``, so one producer with a wrong clock cannot drag every window forward. A
live stream (its newest event time within ten minutes of the wall clock) that goes quiet
keeps time with the wall clock; a replay (far behind the wall clock) does not.
Each process has its own clock (fed by the partitions it reads); with partitions of one
topic the clocks of a cluster's processes stay close.

>>> c = StreamClock(max_skew_ms=1000, wall=lambda: 100.0)
>>> c.now_ms()
-1
>>> c.observe(50_000); c.observe(40_000); c.now_ms()
50000
>>> c.observe(10**12); c.now_ms()   # a clock far in the future is capped at wall + skew
101000
>>> t = [1000.0]; live = StreamClock(wall=lambda: t[0])
>>> live.observe(999_000); t[0] = 1030.0; live.now_ms()   # live and quiet for 30 s: moves on
1029000
>>> old = StreamClock(wall=lambda: t[0]); old.observe(5_000); t[0] = 1100.0; old.now_ms()  # a replay
5000
"""

from __future__ import annotations

import time
from collections.abc import Callable

LIVE_WINDOW_MS = 600_000


class StreamClock:
    __slots__ = ("_anchor", "_max", "_seen_wall", "_skew", "_speed", "_wall")

    def __init__(self, max_skew_ms: int = 60_000, wall: Callable[[], float] = time.time) -> None:
        self._max = -1
        self._seen_wall = 0.0  # wall clock (s) when the newest event time was seen
        self._skew = max_skew_ms
        self._wall = wall
        self._anchor = (0.0, -1)  # (wall s, stream ms) of the last speed sample
        self._speed = 1.0  # stream ms per wall ms, at least 1

    def wall_of(self, ts_ms: int) -> float:
        """When (wall-clock seconds) stream time is expected to reach `ts_ms`: now if it has;
        else at the current pace (1x in a live run, much faster in a replay), so an
        event-time timer fires on time in both.

        >>> t = [0.0]; c = StreamClock(max_skew_ms=10**12, wall=lambda: t[0])
        >>> c.observe(0); c.wall_of(5_000)            # live pace: 5 s of event time = 5 s
        5.0
        >>> t[0] = 2.0; c.observe(200_000); c.wall_of(300_000)   # 100x faster: 1 s
        3.0
        """
        now = self._wall()
        cur = self.now_ms()
        if cur < 0:  # no stream time yet (a restart before any event): look again in a second
            return now + 1.0
        if ts_ms <= cur:
            return now
        aw, am = self._anchor
        if am < 0:
            self._anchor = (now, cur)
        elif now - aw >= 1.0:
            self._speed = max(1.0, (cur - am) / ((now - aw) * 1000))
            self._anchor = (now, cur)
        return now + (ts_ms - cur) / 1000 / self._speed

    def observe(self, ts_ms: int) -> None:
        # A plain max under the GIL: a lost race only delays the clock by one batch.
        if ts_ms > self._max:
            self._max = ts_ms
            self._seen_wall = self._wall()

    def resume(self, ts_ms: int) -> None:
        """Seed the clock with a stream time restored from a snapshot, before any event.

        A time that was live (within ``LIVE_WINDOW_MS`` of the wall clock) counts as seen
        when it happened, so the downtime counts as time passed and a restarted engine
        fires the waits and absence windows that came due while it was down, with no new
        event needed; an older one (a replay) waits for events as before.

        >>> c = StreamClock(wall=lambda: 1000.0); c.resume(990_000); c.now_ms()  # down 10 s
        1000000
        >>> r = StreamClock(wall=lambda: 1000.0); r.resume(5_000); r.now_ms()      # a replay
        5000
        """
        if ts_ms <= self._max:
            return
        wall = self._wall()
        self._max = ts_ms
        self._seen_wall = min(wall, ts_ms / 1000) if wall * 1000 - ts_ms < LIVE_WINDOW_MS else wall

    def now_ms(self) -> int:
        """The newest event time; in a live stream (it was within `LIVE_WINDOW_MS` of the
        wall clock when seen) that has gone quiet, it keeps moving with the wall clock, so
        waits, label horizons and windows still end when nothing arrives."""
        if self._max < 0:
            return -1
        wall_ms = int(self._wall() * 1000)
        now = self._max
        seen_ms = int(self._seen_wall * 1000)
        if seen_ms - self._max < LIVE_WINDOW_MS:
            now += max(0, wall_ms - seen_ms)
        return min(now, wall_ms + self._skew)
