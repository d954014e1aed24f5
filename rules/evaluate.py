"""What the journey runtime evaluates against an event or a profile, without state of its
own: whether an event fires a trigger (`fires`, `where_matches`), whether a branch
condition holds (`holds`), which A/B arm a profile takes (`arm_of`), and the send
variables (`render_vars`). `Context` is what they read about the profile.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flows.core.conditions import COMPARE, matcher
from flows.core.conditions import Condition as EventCondition
from flows.core.contract import Event
from rules.attributes import PII, Attributes, value_of
from rules.journeys.model import (
    AttributeCondition,
    EventTrigger,
    FeatureCondition,
    PropCondition,
    ScoreCondition,
    ScoreTrigger,
    SegmentCondition,
    SegmentTrigger,
    TagCondition,
    TagTrigger,
)


@dataclass
class Context:
    """What branch conditions and sends read about the profile."""

    tags: frozenset[str] = frozenset()
    segment: str = ""
    values: Mapping[str, float] = field(default_factory=dict)
    scores: Mapping[str, float] = field(default_factory=dict)


# --- triggers ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _compiled(where: tuple[EventCondition, ...]) -> Callable[[Any], bool] | None:
    """A ``where`` filter compiled once (the filters are frozen and few: one per trigger)."""
    return matcher(where)


def where_matches(where: tuple[EventCondition, ...], e: Event) -> bool:
    """Whether the event passes a trigger's ``where`` filter (an empty one passes all)."""
    match = _compiled(where) if where else None
    return match is None or match(e)


def fires(trig: Any, e: Event) -> bool:
    if isinstance(trig, EventTrigger):
        return e.type == trig.type and where_matches(trig.where, e)
    p = e.props or {}
    if isinstance(trig, ScoreTrigger):
        want = (trig.model, trig.threshold, trig.direction)
        return e.type == "score_crossed" and (p.get("model"), p.get("threshold"), p.get("direction")) == want
    if isinstance(trig, SegmentTrigger):
        return e.type == "segment_changed" and p.get("segment") == trig.enter
    if isinstance(trig, TagTrigger):
        return (
            e.type == ("tag_added" if trig.change == "added" else "tag_removed") and p.get("tag") == trig.tag
        )
    return False


def event_prop(e: Event, path: str) -> Any:
    parts = path.split(".")
    if parts[0] != "props":
        return None
    v: Any = e.props
    for part in parts[1:]:
        v = v.get(part) if isinstance(v, dict) else None
    return v


# --- branch conditions and A/B arms -----------------------------------------------------------


def _compare(got: Any, op: str, value: Any) -> bool:
    """A prop or attribute against a condition's operator and value."""
    if op == "in":
        return got in value
    if op in ("==", "!="):
        return (got == value) == (op == "==")
    return isinstance(got, int | float) and not isinstance(got, bool) and COMPARE[op](got, value)


def holds(
    c: Any,
    ctx: Context,
    trigger_props: Mapping[str, Any],
    journey_tags: set[str],
    attrs: Attributes | None = None,
) -> bool:
    if isinstance(c, TagCondition):
        return (c.tag in ctx.tags or c.tag in journey_tags) == c.present
    if isinstance(c, SegmentCondition):
        return ctx.segment == c.segment
    if isinstance(c, FeatureCondition):
        v = ctx.values.get(c.feature)
        return v is not None and COMPARE[c.op](v, c.value)
    if isinstance(c, ScoreCondition):
        v = ctx.scores.get(c.model)
        return v is not None and COMPARE[c.op](v, c.value)
    if isinstance(c, PropCondition):
        got: Any = trigger_props
        for part in c.field.split(".")[1:]:
            got = got.get(part) if isinstance(got, dict) else None
        return _compare(got, c.op, c.value)
    if isinstance(c, AttributeCondition):
        a: Any = value_of(attrs, c.name)
        if a is None or a == PII:
            return False
        if isinstance(a, list):
            if c.op == "in":
                return any(x in c.value for x in a)
            return c.op in ("==", "!=") and (c.value in a) == (c.op == "==")
        return _compare(a, c.op, c.value)
    return False


def arm_of(profile_id: str, journey_id: str, weights: tuple[int, ...]) -> int:
    """The A/B arm of a profile: a stable hash of (profile, journey) over the weights.

    >>> arm_of("p1", "j", (50, 50)) == arm_of("p1", "j", (50, 50))
    True
    """
    h = int.from_bytes(hashlib.sha256(f"{journey_id}\x1f{profile_id}".encode()).digest()[:8], "big")
    point = h % sum(weights)
    for i, w in enumerate(weights):
        if point < w:
            return i
        point -= w
    return len(weights) - 1  # pragma: no cover


# --- send variables ---------------------------------------------------------------------------


_VAR = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def render_vars(
    pairs: tuple[tuple[str, str], ...],
    pid: str,
    ctx: Context,
    trigger: Mapping[str, Any],
    attrs: Attributes | None = None,
) -> dict[str, str]:
    """Fill ``{{...}}`` placeholders: ``profile.id``, ``profile.<attribute>``, ``segment``,
    ``tags``, ``features.<name>``, ``score.<model>``, ``trigger.props.<field>``; anything
    unknown or without a value renders empty. A PII attribute (masked in the engine) is
    left as its placeholder for the sender, which holds the contact data, to fill.

    >>> render_vars((("hi", "{{ profile.id }}: {{features.orders_30d}} / {{trigger.props.sku}}"),),
    ...             "p1", Context(values={"orders_30d": 2.0}), {"sku": "S1"})
    {'hi': 'p1: 2 / S1'}
    """

    def one(m: re.Match[str]) -> str:
        path = m.group(1).split(".")
        v: Any = None
        if path == ["profile", "id"]:
            v = pid
        elif len(path) == 2 and path[0] == "profile":
            v = value_of(attrs, path[1])
            if v == PII:
                return m.group(0)
            if isinstance(v, list):
                v = ",".join("" if x is None else str(x) for x in v)
        elif path == ["segment"]:
            v = ctx.segment
        elif path == ["tags"]:
            v = ",".join(sorted(ctx.tags))
        elif len(path) == 2 and path[0] == "features":
            v = ctx.values.get(path[1])
        elif len(path) == 2 and path[0] == "score":
            v = ctx.scores.get(path[1])
        elif len(path) >= 3 and path[:2] == ["trigger", "props"]:
            v = trigger
            for part in path[2:]:
                v = v.get(part) if isinstance(v, Mapping) else None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return "" if v is None or isinstance(v, dict | list) else str(v)

    return {k: _VAR.sub(one, text) for k, text in pairs}
