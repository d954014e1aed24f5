"""Local time in the profile's timezone, from instants of event time (epoch ms): when a
wait node ends (`wait_until`), when a date trigger fires next (`next_date_fire`), and
whether an instant falls in a journey's quiet hours and when they end
(`quiet_hours_decision`, DST-aware).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.journeys.model import WEEKDAYS, WaitNode


def valid_tz(name: str) -> bool:
    """Whether `name` is a timezone this machine knows (an IANA name like ``Asia/Shanghai``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def wait_until(node: WaitNode, t: int, tz: str) -> int:
    """Event time a wait started at `t` ends: after its duration, or at the next local
    `until` time (on `weekday`, if given) in the profile's timezone."""
    if node.duration_ms is not None:
        return t + node.duration_ms
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(t / 1000, UTC).astimezone(zone)
    minute = node.until_min or 0
    cand = local.replace(hour=minute // 60, minute=minute % 60, second=0, microsecond=0)
    for _ in range(8):
        ok_day = node.weekday is None or WEEKDAYS[cand.weekday()] == node.weekday
        if cand > local and ok_day:
            return int(cand.astimezone(UTC).timestamp() * 1000)
        cand = (cand + timedelta(days=1)).replace(hour=minute // 60, minute=minute % 60)
    return t  # pragma: no cover


def parse_date(value: str, fmt: str) -> tuple[int | None, int, int] | None:
    """(year or None, month, day) of "MM-DD" / "YYYY-MM-DD", or None when it does not parse."""
    try:
        parts = [int(x) for x in value.split("-")]
    except ValueError:
        return None
    if fmt == "MM-DD" and len(parts) == 2:
        y, (m, d) = None, parts
    elif fmt == "YYYY-MM-DD" and len(parts) == 3:
        y, m, d = parts
    else:
        return None
    return (y, m, d) if 1 <= m <= 12 and 1 <= d <= 31 else None


def next_date_fire(value: str, fmt: str, offset_days: int, at_min: int, tz: str, after_ms: int) -> int | None:
    """The first instant after `after_ms` that is `offset_days` from the date, at `at_min`
    local time in `tz` (every year for MM-DD; Feb 29 falls on Feb 28 in other years).

    >>> from datetime import datetime
    >>> t = next_date_fire("03-15", "MM-DD", -1, 600, "Asia/Shanghai", 1_767_225_600_000)  # after 2026-01-01
    >>> datetime.fromtimestamp(t / 1000, ZoneInfo("Asia/Shanghai")).isoformat()
    '2026-03-14T10:00:00+08:00'
    """
    parsed = parse_date(value, fmt)
    if parsed is None:
        return None
    y, m, d = parsed
    zone = ZoneInfo(tz)
    start_year = datetime.fromtimestamp(max(after_ms, 0) / 1000, UTC).year
    years = [y] if y is not None else [start_year - 1, start_year, start_year + 1]
    for year in years:
        day = d
        while day > 28:
            try:
                base = datetime(year, m, day, tzinfo=zone)
                break
            except ValueError:
                day -= 1
        else:
            base = datetime(year, m, day, tzinfo=zone)
        local = (base + timedelta(days=offset_days)).replace(hour=at_min // 60, minute=at_min % 60)
        ms = int(local.astimezone(UTC).timestamp() * 1000)
        if ms > after_ms:
            return ms
    return None


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
