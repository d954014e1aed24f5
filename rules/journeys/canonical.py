"""A journey back as plain data: `to_canonical` spells out every default and every node
id, so the same definition gives the same data whatever the file's format, layout,
comments or key order; it parses back to an equal `Journey`. That data is what
`rules.store` keeps in Redis, and what `fingerprint` hashes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from flows.core.conditions import Condition as EventCondition
from flows.core.durations import format_duration
from rules.journeys.model import (
    AbsenceTrigger,
    AbSplitNode,
    AttributeCondition,
    BranchNode,
    Condition,
    EventTrigger,
    FeatureCondition,
    InactivityTrigger,
    Journey,
    Node,
    QuietCondition,
    ScoreCondition,
    ScoreTrigger,
    SegmentCondition,
    SegmentTrigger,
    SendNode,
    TagCondition,
    TagNode,
    TagTrigger,
    TaskNode,
    TicketNode,
    Trigger,
    WaitNode,
)


def _fmt_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _canon_value(op: str, value: Any) -> Any:
    """A condition's value as JSON: an ``in`` set as a list in a stable order."""
    if op == "in":
        return sorted(value, key=lambda v: (type(v).__name__, v))
    return value


def _canon_where(where: tuple[EventCondition, ...]) -> list[list[Any]]:
    return [[c.field, c.op, _canon_value(c.op, c.value)] for c in where]


def _canon_trigger(t: Trigger) -> dict[str, Any]:
    body: dict[str, Any]
    if isinstance(t, EventTrigger):
        body = {"type": t.type, "where": _canon_where(t.where)}
    elif isinstance(t, AbsenceTrigger):
        body = {"after": t.after, "missing": t.missing, "within": format_duration(t.within_ms),
                "where": _canon_where(t.where)}  # fmt: skip
    elif isinstance(t, InactivityTrigger):
        body = {"for": format_duration(t.for_ms)}
    elif isinstance(t, ScoreTrigger):
        body = {"model": t.model, "threshold": t.threshold, "direction": t.direction}
    elif isinstance(t, SegmentTrigger):
        body = {"enter": t.enter}
    elif isinstance(t, TagTrigger):
        body = {t.change: t.tag}
    else:
        body = {"field": t.field, "format": t.format, "at": _fmt_hhmm(t.at_min)}
        if t.offset_days:
            body["offset"] = f"{t.offset_days}d"
    return {t.KIND: body}


def _canon_condition(c: Condition) -> dict[str, Any]:
    if isinstance(c, TagCondition):
        return {"tag" if c.present else "not_tag": c.tag}
    if isinstance(c, SegmentCondition):
        return {"segment": c.segment}
    if isinstance(c, FeatureCondition):
        return {"feature": c.feature, "op": c.op, "value": c.value}
    if isinstance(c, ScoreCondition):
        return {"score": c.model, "op": c.op, "value": c.value}
    if isinstance(c, QuietCondition):
        return {"quiet_for": format_duration(c.for_ms), "types": sorted(c.types)}
    if isinstance(c, AttributeCondition):
        return {"attribute": c.name, "op": c.op, "value": _canon_value(c.op, c.value)}
    return {"prop": c.field, "op": c.op, "value": _canon_value(c.op, c.value)}


def _canon_node(n: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"type": n.KIND, "id": n.id}
    if isinstance(n, WaitNode):
        if n.duration_ms is not None:
            out["duration"] = format_duration(n.duration_ms)
        else:
            out["until"] = _fmt_hhmm(n.until_min or 0)
            if n.weekday is not None:
                out["weekday"] = n.weekday
    elif isinstance(n, SendNode):
        out.update(channel=n.channel, template=n.template, vars=dict(n.vars))
    elif isinstance(n, BranchNode):
        out["if"] = [_canon_condition(c) for c in n.when]
        out["then"] = [_canon_node(x) for x in n.then]
        out["else"] = [_canon_node(x) for x in n.otherwise]
    elif isinstance(n, AbSplitNode):
        out["arms"] = [
            {
                "name": a.name,
                "weight": a.weight,
                "then": [_canon_node(x) for x in a.then],
                "holdout": a.holdout,
            }
            for a in n.arms
        ]
    elif isinstance(n, TagNode):
        out[n.action] = n.tag
    elif isinstance(n, TaskNode):
        out.update(assignee=n.assignee, title=n.title)
        if n.due_ms is not None:
            out["due"] = format_duration(n.due_ms)
    elif isinstance(n, TicketNode):
        out.update(queue=n.queue, title=n.title, priority=n.priority)
    return out


def to_canonical(journey: Journey) -> dict[str, Any]:
    """The definition as plain JSON-ready data, every default and node id spelled out;
    ``parse_journey(to_canonical(j)) == j``. Not in it: `source` and `version`."""
    entry: dict[str, Any] = {"policy": journey.entry}
    if journey.entry == "once_per":
        entry["days"] = journey.entry_days
    if journey.entry_if:  # absent when empty: journeys without it keep their fingerprint
        entry["if"] = [_canon_condition(c) for c in journey.entry_if]
    out: dict[str, Any] = {
        "id": journey.id,
        "name": journey.name,
        "priority": journey.priority,
        "entry": entry,
        "max_active": journey.max_active,
    }
    if journey.quiet_hours is not None:
        q = journey.quiet_hours
        out["quiet_hours"] = {
            "start": _fmt_hhmm(q.start_min),
            "end": _fmt_hhmm(q.end_min),
            "action": q.action,
        }
    out["caps"] = [
        {"count": c.count, "per": format_duration(c.per_ms), **({"channel": c.channel} if c.channel else {})}
        for c in journey.caps
    ]
    out["trigger"] = _canon_trigger(journey.trigger)
    out["nodes"] = [_canon_node(n) for n in journey.nodes]
    return out


def fingerprint(journey: Journey) -> str:
    """16 hex digits of the sha256 of the canonical JSON: changes with any part of the
    definition, not with the file's format, layout, comments or key order (nor with
    `source` or `version`)."""
    text = orjson.dumps(to_canonical(journey), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:16]
