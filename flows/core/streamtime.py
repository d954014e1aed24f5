"""Stream time: the engine's "now" in event time, kept per source partition.

Bytewax wakes a key only for its own items or its own (wall-clock) timer, yet a silent
profile's windows must still move when time passes, in live runs and in full-speed
replays alike. The one mechanism for that: the profile stage feeds the event times of
the events reaching each profile into a `StreamClock`, under the source partition they
were read from; a profile woken by its timer reads the time of **its own partition**
(producers key events by profileId, so all of a profile's events come through one
partition, in order) and computes its windows and deadlines as of that event time. In
a live run stream time follows the wall clock; in a replay it follows the replayed
history, however fast.

Why per partition: when partitions are read at different speeds (a catch-up after a
restart, one partition with a backlog), a clock shared by all of them would run ahead
of the lagging partition and wake its profiles past a deadline before their own earlier
events are read — a cart reminder fired although the order is still in the backlog.
Why where events reach the profiles, per worker: a time fed where events are read would
run ahead of the events still travelling to their profile (Bytewax may run a profile's
timer between the two). Channels keep their order, so once a worker has received an
event of time T from a partition, every earlier event of that partition bound for that
worker has reached its profile.

A partition's time never runs ahead of the wall clock plus ``max_skew_ms`` (one producer
with a wrong clock cannot drag every window forward), never goes backwards, and, while
the partition is live (its newest event time within ten minutes of the wall clock) and
quiet, keeps moving with the wall clock so waits and absence windows still end when
nothing arrives. A replay (far behind the wall clock) does not move without events.

"Quiet" is told by the source when it can: the Kafka source reports after every poll
whether it is caught up (`caught_up`, by the partition's high watermark); such a
partition moves with the wall clock only while caught up, never while it is reading a
backlog. A source that does not report (files, the synthetic generator) counts as quiet
since its newest event. A partition that is idle — caught up, with nothing new read for
``idle_ms`` of wall time — also follows the newest partition, so it does not hold its
profiles back (in a replay, a partition with few events would otherwise stop its
profiles' clocks; the end of a bounded input is the stages' ``on_eof``, which reads the
newest time of all). Why not as soon as it is caught up:
"caught up" is by the high watermark of the partition's last fetch, and a producer's
writes to two partitions do not land at the same instant (each partition's messages
travel in their own batch), so a partition read to its end may be a fetch away from
events older than what another partition already shows. Following at once fired a cart
reminder whose order was in that fetch (the kill -9 test caught it, once). This is the
idleness of watermark systems (Flink's ``withIdleness``); the default 2 s is well over
the longest a fetch is held (``kafka.fetch_wait_ms``; librdkafka's bound is 500 ms).

Each process has its own clock. A profile whose partition its worker has received
nothing from yet uses the earliest time over the partitions it has; ``now_ms()`` without
a partition is the newest over all of them (the model learners' label horizon).

>>> c = StreamClock(max_skew_ms=1000, wall=lambda: 100.0)
>>> c.now_ms()
-1
>>> c.observe(50_000, 0); c.observe(40_000, 1); c.now_ms(0), c.now_ms(1), c.now_ms()
(50000, 40000, 50000)
>>> c.now_ms(7)   # a partition not read here: the earliest of those that are
40000
>>> c.observe(10**12, 0); c.now_ms(0)   # a clock far in the future is capped at wall + skew
101000
>>> t = [1000.0]; live = StreamClock(wall=lambda: t[0])
>>> live.observe(999_000); t[0] = 1030.0; live.now_ms(0)   # live and quiet for 30 s: moves on
1029000
>>> old = StreamClock(wall=lambda: t[0]); old.observe(5_000); t[0] = 1100.0; old.now_ms(0)  # a replay
5000
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LIVE_WINDOW_MS = 600_000

Clock = Callable[[], float]  # seconds since the epoch (time.time) or any monotonic reading


def now_ms(clock: Clock = time.time) -> int:
    return int(clock() * 1000)


class _Partition:
    """One source partition's event time as one worker has received it (times in ms)."""

    __slots__ = ("last", "max", "seen_ms")

    def __init__(self) -> None:
        self.max = -1
        self.seen_ms = 0  # wall clock when `max` was seen (or, for a restored time, when it happened)
        self.last = -1  # the last time returned: never go back

    def now(self, wall_ms: int, skew_ms: int, quiet: bool) -> int:
        if self.max < 0:
            return -1
        now = self.max
        if quiet and self.seen_ms - self.max < LIVE_WINDOW_MS:
            now += max(0, wall_ms - self.seen_ms)
        now = min(now, wall_ms + skew_ms)
        if now < self.last:
            return self.last
        self.last = now
        return now


class StreamClock:
    __slots__ = (
        "_anchor", "_caught_up", "_idle_ms", "_idle_since", "_paced", "_parts", "_skew", "_speed", "_wall",
        "source_reports",
    )  # fmt: skip

    def __init__(self, max_skew_ms: int = 60_000, wall: Clock = time.time, idle_ms: int = 2_000) -> None:
        # (worker thread, partition) -> time: a worker's time for a partition is what it has
        # received from it, so every earlier event of that partition bound for this worker
        # has already reached its profile (channels between two workers keep their order).
        self._parts: dict[tuple[int, int], _Partition] = {}
        self._caught_up: dict[int, bool] = {}  # partition -> the source's last report
        # partition -> wall ms since when it has been caught up with nothing new
        self._idle_since: dict[int, int] = {}
        self._idle_ms = idle_ms
        # Set by a source that reports `caught_up` for every partition it reads (Kafka):
        # then a partition counts as reading a backlog until its first report says otherwise.
        self.source_reports = False
        self._skew = max_skew_ms
        self._wall = wall
        self._anchor = (0.0, -1)  # (wall s, stream ms) of the last speed sample
        self._speed = 1.0  # stream ms per wall ms, at least 1
        self._paced = False  # whether `_speed` has been measured

    def _mine(self, partition: int) -> _Partition:
        """This worker thread's time for `partition` (created on first use)."""
        key = (threading.get_ident(), partition)
        p = self._parts.get(key)
        if p is None:
            p = self._parts[key] = _Partition()
        return p

    def _quiet(self, partition: int) -> bool:
        return self._caught_up.get(partition, not self.source_reports)

    def observe(self, ts_ms: int, partition: int = 0) -> None:
        """An event time from `partition`, as it reaches this worker's profiles.

        Fed where the events reach the profiles, not where they are read: a time read
        but not yet delivered must not wake a profile whose own earlier events are still
        on their way to it."""
        p = self._mine(partition)
        if ts_ms > p.max:
            p.max = ts_ms
            p.seen_ms = int(self._wall() * 1000)

    def caught_up(self, partition: int, caught_up: bool) -> None:
        """The source's report after a poll: at the end of the partition, or reading a
        backlog. Only a caught-up partition lets the wall clock move its time; only an idle
        one (caught up for ``idle_ms`` with nothing new) follows the newest partition."""
        self._caught_up[partition] = caught_up
        if not caught_up:
            self._idle_since.pop(partition, None)
        elif partition not in self._idle_since:
            self._idle_since[partition] = int(self._wall() * 1000)

    def resume(self, ts_ms: int, partition: int = 0) -> None:
        """Seed a partition's time with one restored from a snapshot, before any event.

        A time that was live (within ``LIVE_WINDOW_MS`` of the wall clock) counts as seen
        when it happened, so the downtime counts as time passed once the partition is
        caught up: a restarted engine fires the waits and absence windows that came due
        while it was down, with no new event needed, but not before it has read the
        events that arrived meanwhile. An older time (a replay) waits for events.

        >>> c = StreamClock(wall=lambda: 1000.0); c.resume(990_000); c.now_ms(0)  # down 10 s
        1000000
        >>> c = StreamClock(wall=lambda: 1000.0); c.resume(990_000); c.caught_up(0, False)
        >>> c.now_ms(0)   # but still reading what arrived meanwhile
        990000
        >>> r = StreamClock(wall=lambda: 1000.0); r.resume(5_000); r.now_ms(0)    # a replay
        5000
        """
        p = self._mine(partition)
        if ts_ms <= p.max:
            return
        wall_ms = int(self._wall() * 1000)
        p.max = ts_ms
        p.seen_ms = min(wall_ms, ts_ms) if wall_ms - ts_ms < LIVE_WINDOW_MS else wall_ms

    def now_ms(self, partition: int | None = None) -> int:
        """Stream time of `partition` as this worker has received it (-1 before any);
        without one, the newest over every partition and worker of the process. A
        partition this worker has received nothing from gets the earliest time of those it
        has (see the module's docstring)."""
        parts = self._parts
        if not parts:
            return -1
        wall_ms = int(self._wall() * 1000)
        skew = self._skew
        quiet = self._quiet
        if partition is None:
            return max(p.now(wall_ms, skew, quiet(k[1])) for k, p in list(parts.items()))
        me = threading.get_ident()
        p = parts.get((me, partition))
        if p is not None:
            t = p.now(wall_ms, skew, quiet(partition))
            idle = self._idle_since.get(partition)
            if idle is not None and wall_ms - idle >= self._idle_ms:
                # Idle: it holds nothing older, so it follows the partitions ahead of it
                # (with producers that write in event-time order, what arrives next is
                # newer than anything read anywhere, once their writes have all landed).
                ahead = max(q.now(wall_ms, skew, quiet(k[1])) for k, q in list(parts.items()))
                if ahead > t:
                    p.last = t = ahead
            return t
        mine = [q.now(wall_ms, skew, quiet(k[1])) for k, q in list(parts.items()) if k[0] == me]
        times = [t for t in mine if t >= 0] or [
            t for k, q in list(parts.items()) if (t := q.now(wall_ms, skew, quiet(k[1]))) >= 0
        ]
        return min(times) if times else -1

    def wall_of(self, ts_ms: int, partition: int | None = None) -> float:
        """When (wall-clock seconds) stream time is expected to reach `ts_ms`: now if it has;
        else at the current pace (1x in a live run, much faster in a replay), so an
        event-time timer fires on time in both. A caught-up partition not idle yet is looked
        at again when it turns idle (its time may then jump to the newest partition's).

        >>> t = [0.0]; c = StreamClock(max_skew_ms=10**12, wall=lambda: t[0])
        >>> c.observe(0); c.wall_of(5_000)            # live pace: 5 s of event time = 5 s
        5.0
        >>> t[0] = 2.0; c.observe(200_000); c.wall_of(300_000)   # 100x faster: 1 s
        3.0
        >>> c.caught_up(0, True); c.wall_of(10**9, 0)    # idle in 2 s: look again then
        4.0
        """
        now = self._wall()
        if not self._parts:  # no stream time yet (a restart before any event): look again in a second
            return now + 1.0
        cur = self.now_ms(partition)
        if cur < 0:
            return now + 1.0
        if ts_ms <= cur:
            return now
        aw, am = self._anchor
        newest = -1  # read only when the pace is sampled (it scans every partition)
        if am < 0 or now - aw >= 1.0 or not self._paced:
            newest = self.now_ms()
            if am < 0:
                self._anchor = (now, newest)
            elif now - aw >= 1.0:
                self._speed = max(1.0, (newest - am) / ((now - aw) * 1000))
                self._anchor = (now, newest)
                self._paced = True
        at = now + (ts_ms - cur) / 1000 / self._speed
        if not self._paced and now * 1000 - newest > LIVE_WINDOW_MS:
            at = min(at, now + 1.0)  # a replay whose pace is not measured yet: look again in a second
        idle = self._idle_since.get(partition) if partition is not None else None
        if idle is not None:
            turns_idle = (idle + self._idle_ms) / 1000
            if turns_idle > now:
                return min(at, turns_idle)
        return at
