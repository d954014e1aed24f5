"""Durations as written in config (``"90s"``, ``"15m"``, ``"1h30m"``, ``"7d"``, ``"2w"``) and
back, in milliseconds.

>>> parse_duration("1h30m"), format_duration(parse_duration("1h30m"))
(5400000, '90m')
"""

from __future__ import annotations

import re

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

DURATION_RE = re.compile(r"(\d+)(ms|s|m|h|d|w)")
UNIT_MS = {"ms": 1, "s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}
_LARGEST_FIRST = (("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", SECOND_MS), ("ms", 1))


def parse_duration(text: str) -> int:
    """``"90d"``, ``"1h"``, ``"15m"``, ``"1h30m"`` -> milliseconds.

    >>> parse_duration("1h"), parse_duration("90d"), parse_duration("1h30m")
    (3600000, 7776000000, 5400000)
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"duration {text!r} is not a string like '1h', '7d', '15m'")
    pos, total = 0, 0
    for m in DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(text) or total <= 0:
        raise ValueError(f"duration {text!r} does not parse (use e.g. '90s', '15m', '1h', '7d', '2w')")
    return total


def format_duration(ms: int) -> str:
    """Milliseconds -> an exact duration string in the largest unit that fits, up to days.

    >>> [format_duration(x) for x in (86_400_000, 7_200_000, 90_000, 1_500, 5_400_000, 1_209_600_000)]
    ['1d', '2h', '90s', '1500ms', '90m', '14d']
    """
    for unit, size in _LARGEST_FIRST:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise AssertionError("unreachable: every ms count is a whole number of ms")
