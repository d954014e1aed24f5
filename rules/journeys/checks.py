"""Reading one value of a journey file: where it sits (`_At`, for the error message) and
the typed checks the parser reads every value with.

Each check returns the value as the model holds it or raises
``ConfigError("{file}: {path}: {what}")``. The names keep their leading underscore: they
serve the parsers of this package (`rules.journeys.parse`, `rules.journeys.parse_nodes`)
and nothing outside it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flows.core.conditions import COMPARE, OPS, TOP_FIELDS
from flows.core.contract import TYPE_RE
from flows.core.durations import DAY_MS, parse_duration
from flows.core.errors import ConfigError
from flows.features.declarations import NAME_RE

HHMM_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, slots=True)
class _At:
    """The file and the path inside it, for error messages."""

    source: str
    path: str = ""

    def key(self, k: str) -> _At:
        return _At(self.source, f"{self.path}.{k}" if self.path else k)

    def item(self, i: int) -> _At:
        return _At(self.source, f"{self.path}[{i}]")

    def error(self, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.path or 'top level'}: {what}")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields(raw: Any, at: _At, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping[str, Any]:
    """`raw` as a mapping holding every required key and nothing unknown."""
    if not isinstance(raw, Mapping):
        raise at.error(f"must be a mapping, got {_show(raw)}")
    extra = set(raw) - set(required) - set(optional)
    if extra:
        allowed = ", ".join(sorted({*required, *optional}))
        raise at.error(f"unknown keys {sorted(extra, key=str)} (allowed: {allowed})")
    missing = [k for k in required if k not in raw]
    if missing:
        raise at.error(f"missing required keys {missing}")
    return raw


def _one_of(raw: Mapping[str, Any], keys: Sequence[str], at: _At, what: str) -> str:
    """The one key of `keys` that `raw` has; none or several is an error."""
    present = [k for k in keys if k in raw]
    if len(present) != 1:
        has = f"has {' and '.join(present)}" if present else "has none"
        raise at.error(f"needs exactly one of {', '.join(keys)} ({what}); it {has}")
    return present[0]


def _str(v: Any, at: _At, pattern: re.Pattern[str] | None = None, form: str = "") -> str:
    if not isinstance(v, str) or not v.strip():
        raise at.error(f"must be a non-empty string, got {_show(v)}")
    if pattern is not None and not pattern.fullmatch(v):
        raise at.error(f"{v!r} must match {form or pattern.pattern}")
    return v


def _name(v: Any, at: _At) -> str:
    return _str(v, at, NAME_RE, "[a-z][a-z0-9_]{0,63}")


def _event_type(v: Any, at: _At) -> str:
    return _str(v, at, TYPE_RE, "[a-z0-9_.:-]{1,64} (an event type)")


def _choice(v: Any, at: _At, options: Sequence[str]) -> str:
    if not isinstance(v, str) or v not in options:
        raise at.error(f"{_show(v)} is not one of {', '.join(options)}")
    return v


def _int(v: Any, at: _At, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise at.error(f"must be an integer {bound}, got {_show(v)}")
    return v


def _bool(v: Any, at: _At) -> bool:
    if not isinstance(v, bool):
        raise at.error(f"must be true or false, got {_show(v)}")
    return v


def _number(v: Any, at: _At) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise at.error(f"must be a number, got {_show(v)}")
    return float(v)


def _list(v: Any, at: _At) -> list[Any]:
    if not isinstance(v, list | tuple):
        raise at.error(f"must be a list, got {_show(v)}")
    return list(v)


def _duration(v: Any, at: _At) -> int:
    try:
        return parse_duration(v)
    except ValueError as exc:
        raise at.error(str(exc)) from None


def _hhmm(v: Any, at: _At) -> int:
    """``"21:30"`` -> 1290 minutes after midnight."""
    if isinstance(v, int) and not isinstance(v, bool):
        hint = f"{v // 60}:{v % 60:02d}"
        raise at.error(f'must be a quoted "HH:MM" string (YAML reads an unquoted {hint} as the number {v})')
    m = HHMM_RE.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        raise at.error(f'{_show(v)} is not a time of day "HH:MM" (00:00 to 23:59)')
    return int(m.group(1)) * 60 + int(m.group(2))


def _offset_days(v: Any, at: _At) -> int:
    """``"-30d"`` -> -30: a signed duration in whole days."""
    if not isinstance(v, str):
        raise at.error(f"must be a duration in days like '-30d' or '7d', got {_show(v)}")
    sign = -1 if v.startswith("-") else 1
    ms = _duration(v[1:] if v[:1] in ("+", "-") else v, at)
    if ms % DAY_MS:
        raise at.error(f"{v!r} is not a whole number of days (e.g. '-30d', '7d', '2w')")
    return sign * (ms // DAY_MS)


def _field_path(v: Any, at: _At) -> str:
    """A field of an event: a top-level one or ``props.<name>[.<name>...]``."""
    ok = isinstance(v, str) and (v in TOP_FIELDS or (v.startswith("props.") and all(v.split(".")[1:])))
    if not ok:
        raise at.error(
            f"field {_show(v)} cannot exist in an event (use props.<name> or one of {sorted(TOP_FIELDS)})"
        )
    return v


def _scalar(v: Any, at: _At) -> Any:
    if v is None or isinstance(v, str | bool | int) or (isinstance(v, float) and math.isfinite(v)):
        return v
    raise at.error(f"{_show(v)} must be a string, number, true/false or null")


def _compared(op: Any, v: Any, at_op: _At, at_value: _At, scalars: bool) -> tuple[str, Any]:
    """Operator and value of one comparison. ``in`` takes a list (kept as a frozenset, as
    in features' ``where``), an ordering operator a number, ``==``/``!=`` a number or,
    with `scalars`, any scalar."""
    ops = OPS if scalars else tuple(COMPARE)
    if op not in ops:
        raise at_op.error(f"unknown operator {_show(op)} (one of {' '.join(ops)})")
    if op == "in":
        items = _list(v, at_value)
        if not items:
            raise at_value.error("'in' needs a non-empty list")
        return op, frozenset(_scalar(x, at_value) for x in items)
    if op in ("==", "!=") and scalars:
        return op, _scalar(v, at_value)
    return op, _number(v, at_value)
