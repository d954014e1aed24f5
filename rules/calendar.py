"""Local time in the profile's timezone, from instants of event time (epoch ms).

`quiet_hours_decision`: whether an instant falls in a journey's quiet hours and when they
end, DST-aware.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


def quiet_hours_decision(now_ms: int, tz_name: str, start_min: int, end_min: int) -> tuple[bool, int | None]:
    """Whether ``now_ms`` falls in the profile's quiet hours, and when they end.

    The quiet window is local wall-clock time ``[start_min, end_min)`` in minutes after
    midnight in ``tz_name``; ``start_min > end_min`` crosses midnight (21:00-08:00), and
    ``start_min == end_min`` means no quiet hours. Returns ``(True, end_ms)`` with the
    first instant after ``now_ms`` at which the local clock is out of the window (DST-aware:
    an end time skipped by a spring-forward gap ends the window when the clock jumps; an
    end time that occurs twice ends it the first time after ``now_ms``), else
    ``(False, None)``.

    >>> now = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    >>> quiet_hours_decision(now, "UTC", 21 * 60, 8 * 60)
    (True, 1700035200000)
    >>> quiet_hours_decision(now, "Asia/Shanghai", 21 * 60, 8 * 60)  # 06:13 local
    (True, 1700006400000)
    >>> quiet_hours_decision(now, "Europe/Berlin", 21 * 60, 8 * 60)  # 23:13 local
    (True, 1700031600000)
    >>> quiet_hours_decision(now, "America/New_York", 21 * 60, 8 * 60)  # 17:13 local
    (False, None)
    """
    for m in (start_min, end_min):
        if not 0 <= m < 1440:
            raise ValueError(f"quiet hours are minutes after midnight (0..1439), not {m}")
    if start_min == end_min:
        return False, None
    tz = ZoneInfo(tz_name)
    window_end = _quiet_until(now_ms, tz, start_min, end_min)
    if window_end is None:
        return False, None
    for _ in range(3):  # a DST gap may skip the whole time between the end and the next start
        later = _quiet_until(window_end, tz, start_min, end_min)
        if later is None:
            break
        window_end = later
    return True, window_end


def _quiet_until(ms: int, tz: ZoneInfo, start_min: int, end_min: int) -> int | None:
    """None when the local clock at ``ms`` is out of the window, else the next end time."""
    local = datetime.fromtimestamp(ms / 1000, tz)
    minute = local.hour * 60 + local.minute
    if start_min < end_min:
        if not start_min <= minute < end_min:
            return None
        end_day = local.date()
    else:
        if end_min <= minute < start_min:
            return None
        end_day = local.date() + timedelta(days=1) if minute >= start_min else local.date()
    return _first_instant_at_wall(end_day, end_min, tz, ms)


def _first_instant_at_wall(day: date, minute: int, tz: ZoneInfo, after_ms: int) -> int:
    """The first instant (epoch ms) after ``after_ms`` at which the local clock of ``tz``
    reads ``day`` ``minute`` or, when a DST gap skips that time, jumps past it."""
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz).replace(tzinfo=None)
    instants = [int(wall.replace(tzinfo=tz, fold=fold).timestamp()) for fold in (0, 1)]
    real = [s * 1000 for s in instants if datetime.fromtimestamp(s, tz).replace(tzinfo=None) == wall]
    if real:
        later = [ms for ms in real if ms > after_ms]
        if not later:
            raise AssertionError(f"{wall} {tz} is not after {after_ms}")  # pragma: no cover
        return min(later)
    # A spring-forward gap skips this wall time: the clock passes it at the transition,
    # which lies between the two readings of the nonexistent time. Find its second.
    lo, hi = min(instants), max(instants)  # the clock reads < wall at lo, > wall at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) < wall:
            lo = mid
        else:
            hi = mid
    return hi * 1000
