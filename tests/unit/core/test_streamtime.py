"""Stream time per source partition (`flows.core.streamtime`): pure, with a fake wall clock."""

from __future__ import annotations

from flows.core.streamtime import LIVE_WINDOW_MS, StreamClock

WALL = 2_000_000.0  # s


class Wall:
    def __init__(self, t: float = WALL) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def reporting_clock(wall: Wall) -> StreamClock:
    """A clock fed by a source that reports when each partition is caught up (Kafka)."""
    c = StreamClock(wall=wall, max_skew_ms=10**12, idle_ms=2_000)
    c.source_reports = True
    return c


def test_a_partition_ahead_does_not_move_another():
    c = StreamClock(wall=Wall(), max_skew_ms=10**12)
    c.observe(1_000_000, 0)  # a replay, far behind the wall clock
    c.observe(9_000_000, 1)  # the other partition runs ahead (a catch-up)
    assert c.now_ms(0) == 1_000_000
    assert c.now_ms(1) == 9_000_000
    assert c.now_ms() == 9_000_000  # the newest over all, for the learners
    c.observe(500_000, 0)  # an older event never moves time back
    assert c.now_ms(0) == 1_000_000


def test_a_partition_not_read_here_gets_the_earliest_read_here():
    c = StreamClock(wall=Wall(), max_skew_ms=10**12)
    assert c.now_ms(3) == -1 and c.now_ms() == -1
    c.observe(7_000, 0)
    c.observe(5_000, 1)
    assert c.now_ms(3) == 5_000


def test_a_live_quiet_partition_moves_with_the_wall_clock_and_never_back():
    wall = Wall()
    c = StreamClock(wall=wall)
    c.observe(int(WALL * 1000) - 1_000, 0)  # live: a second behind the wall clock
    wall.t += 30
    assert c.now_ms(0) == int(WALL * 1000) + 29_000
    c.observe(int(WALL * 1000) + 1_000, 0)  # a late-produced event, older than that time
    assert c.now_ms(0) == int(WALL * 1000) + 29_000


def test_a_replay_partition_waits_for_events():
    wall = Wall()
    c = StreamClock(wall=wall)
    c.observe(int(WALL * 1000) - LIVE_WINDOW_MS - 1, 0)
    wall.t += 3600
    assert c.now_ms(0) == int(WALL * 1000) - LIVE_WINDOW_MS - 1


def test_a_reporting_source_moves_time_only_while_caught_up():
    wall = Wall()
    c = StreamClock(wall=wall)
    c.source_reports = True
    live = int(WALL * 1000) - 5_000
    c.observe(live, 0)
    wall.t += 20
    assert c.now_ms(0) == live  # no report yet: maybe a backlog
    c.caught_up(0, False)
    assert c.now_ms(0) == live
    c.caught_up(0, True)
    assert c.now_ms(0) == live + 20_000
    c.caught_up(0, False)  # more arrived: time holds (it never goes back) until events pass it
    wall.t += 10
    assert c.now_ms(0) == live + 20_000
    c.observe(live + 25_000, 0)
    assert c.now_ms(0) == live + 25_000


def test_a_restored_live_time_counts_the_downtime_only_once_the_backlog_is_read():
    wall = Wall()
    c = StreamClock(wall=wall)
    c.source_reports = True
    crashed_at = int(WALL * 1000) - 60_000  # down for a minute
    c.resume(crashed_at, 1)
    assert c.now_ms(1) == crashed_at  # the events of that minute are still to be read
    c.caught_up(1, False)
    c.observe(crashed_at + 30_000, 1)
    assert c.now_ms(1) == crashed_at + 30_000
    c.caught_up(1, True)  # read to the end: the rest of the downtime has passed
    assert c.now_ms(1) == crashed_at + 30_000 + 0  # seen just now: nothing more yet
    wall.t += 5
    assert c.now_ms(1) == crashed_at + 35_000


def test_without_reports_a_restored_live_time_counts_the_downtime_at_once():
    wall = Wall()
    c = StreamClock(wall=wall)
    c.resume(int(WALL * 1000) - 60_000, 0)
    assert c.now_ms(0) == int(WALL * 1000)


def test_wall_of_reads_the_partitions_time():
    wall = Wall(0.0)
    c = StreamClock(wall=wall, max_skew_ms=10**12)
    assert c.wall_of(5_000, 0) == 1.0  # nothing known yet: look again in a second
    c.observe(100_000, 0)
    c.observe(200_000, 1)
    assert c.wall_of(150_000, 1) == 0.0  # partition 1 is past it
    assert c.wall_of(150_000, 0) > 0.0  # partition 0 is not


def test_an_idle_partition_follows_the_newest():
    wall = Wall()
    c = reporting_clock(wall)
    c.observe(1_000, 0)
    c.observe(9_000, 1)
    c.caught_up(1, False)
    c.caught_up(0, False)
    assert c.now_ms(0) == 1_000  # still reading: holds
    c.caught_up(0, True)
    assert c.now_ms(0) == 1_000  # read to its end, but the producer's next write may be landing
    wall.t += 1.5
    c.caught_up(0, True)  # still at the end: idle since the first report
    assert c.now_ms(0) == 1_000
    wall.t += 0.5
    assert c.now_ms(0) == 9_000  # idle for 2 s: nothing older is coming
    c.caught_up(0, False)
    assert c.now_ms(0) == 9_000  # never back


def test_a_partition_that_keeps_receiving_is_never_idle():
    """The race the idleness closes: partition 1 already shows a write whose partition-0
    half is still landing; partition 0, read to its end a moment earlier, holds its time."""
    wall = Wall()
    c = reporting_clock(wall)
    for step in range(10):
        c.observe(1_000 + step, 0)
        c.caught_up(0, False)
        c.caught_up(0, True)
        c.observe(9_000 + step, 1)
        wall.t += 1.0
        assert c.now_ms(0) == 1_000 + step
    wall.t += 2.0
    assert c.now_ms(0) == 9_009


def test_a_timer_set_before_a_partition_turns_idle_is_looked_at_when_it_does():
    """In a stalled replay (pace 1x) a deadline an hour of event time ahead would wait an
    hour of wall time; the partition follows the newest in 2 s, so look again then."""
    wall = Wall()
    c = reporting_clock(wall)
    c.observe(1_000, 0)
    c.observe(9_000_000, 1)
    c.caught_up(0, True)
    # a replay whose pace is not measured yet looks again within a second anyway
    assert c.wall_of(3_601_000, 0) == WALL + 1.0
    wall.t += 1.0
    assert c.wall_of(3_601_000, 0) == WALL + 2.0  # paced now (1x): look again when idle
    wall.t += 1.0
    assert c.wall_of(3_601_000, 0) == WALL + 2.0  # idle now: followed past it, due at once
    assert c.now_ms(0) == 9_000_000
