"""The node lists of a journey file and the branch conditions in them: each node checked
against its type's keys, given its id (explicit or from its position), nested at most
`MAX_DEPTH` lists deep. The format is described in `rules.journeys.parse`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.journeys.checks import (
    _At,
    _bool,
    _choice,
    _compared,
    _duration,
    _event_type,
    _field_path,
    _fields,
    _hhmm,
    _int,
    _list,
    _name,
    _one_of,
    _show,
    _str,
)
from rules.journeys.model import (
    CHANNELS,
    TICKET_PRIORITIES,
    WEEKDAYS,
    AbSplitNode,
    Arm,
    AttributeCondition,
    BranchNode,
    Condition,
    ExitNode,
    FeatureCondition,
    Node,
    PropCondition,
    QuietCondition,
    ScoreCondition,
    SegmentCondition,
    SendNode,
    TagCondition,
    TagNode,
    TaskNode,
    TicketNode,
    WaitNode,
)

NODE_TYPES = ("wait", "send", "branch", "ab_split", "tag", "task", "ticket", "exit")
MAX_DEPTH = 8  # node lists nest at most this deep, the top-level list being depth 1
NODE_ID_RE = re.compile(r"[a-z0-9_]{1,64}")
TEMPLATE_RE = re.compile(r"[a-z0-9_.-]{1,128}")
ASSIGNEE_RE = re.compile(r"\S{1,128}")  # "owner" or a user id
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


# --- branch conditions ----------------------------------------------------------------------


def _condition(raw: Any, at: _At) -> Condition:
    kinds = ("tag", "not_tag", "segment", "feature", "score", "prop", "attribute", "quiet_for")
    _fields(raw, at, (), (*kinds, "op", "value", "types"))
    kind = _one_of(raw, kinds, at, "the kind of condition")
    if kind == "quiet_for":
        f = _fields(raw, at, ("quiet_for",), ("types",))
        types = _list(f.get("types", []), at.key("types"))
        names = frozenset(_event_type(t, at.key("types").item(j)) for j, t in enumerate(types))
        return QuietCondition(_duration(f["quiet_for"], at.key("quiet_for")), names)
    if kind in ("tag", "not_tag", "segment"):
        f = _fields(raw, at, (kind,))
        name = _name(f[kind], at.key(kind))
        return SegmentCondition(name) if kind == "segment" else TagCondition(name, kind == "tag")
    f = _fields(raw, at, (kind, "op", "value"))
    scalars = kind in ("prop", "attribute")
    op, value = _compared(f["op"], f["value"], at.key("op"), at.key("value"), scalars=scalars)
    if kind == "prop":
        return PropCondition(_field_path(f["prop"], at.key("prop")), op, value)
    if kind == "attribute":
        name = _str(f["attribute"], at.key("attribute"), VAR_RE, "an attribute name ([A-Za-z_][A-Za-z0-9_]*)")
        return AttributeCondition(name, op, value)
    if kind == "score" and not 0.0 <= value <= 1.0:
        raise at.key("value").error(f"{value!r} is not a probability from 0 to 1")
    cls = ScoreCondition if kind == "score" else FeatureCondition
    return cls(_name(f[kind], at.key(kind)), op, value)


# --- nodes ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ids:
    """Node ids given so far in one journey, with the path of the node holding each."""

    seen: dict[str, str] = field(default_factory=dict)

    def claim(self, raw: Mapping[str, Any], at: _At) -> str:
        explicit = "id" in raw
        nid = _str(raw["id"], at.key("id"), NODE_ID_RE) if explicit else _auto_id(at.path)
        if nid in self.seen:
            hint = "" if explicit else " (assigned from its position: give one of them an explicit id)"
            where = at.key("id") if explicit else at
            raise where.error(f"node id {nid!r} is already used by {self.seen[nid]}{hint}")
        self.seen[nid] = at.path
        return nid


def _auto_id(path: str) -> str:
    """The id of a node without one, from its path: ``nodes[2].then[0]`` -> ``n2_then0``.

    >>> _auto_id("nodes[2].then[0]"), _auto_id("nodes[3].arms[1].then[0]")
    ('n2_then0', 'n3_arms1_then0')
    """
    return "n" + re.sub(r"\[(\d+)\]", r"\1", path.removeprefix("nodes")).replace(".", "_")


def _nodes(raw: Any, at: _At, depth: int, ids: _Ids, allow_empty: bool = False) -> tuple[Node, ...]:
    items = _list(raw, at)
    if not items and not allow_empty:
        raise at.error("must list at least one node")
    if items and depth > MAX_DEPTH:
        raise at.error(f"nodes nested deeper than {MAX_DEPTH} levels")
    out: list[Node] = []
    for i, item in enumerate(items):
        node = _node(item, at.item(i), depth, ids)
        if isinstance(node, ExitNode) and i != len(items) - 1:
            raise at.item(i).error("exit must be the last node of its list (nothing after it would run)")
        out.append(node)
    return tuple(out)


def _wait(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> WaitNode:
    kind = _one_of(f, ("duration", "until"), at, "how long to wait")
    if kind == "duration":
        if "weekday" in f:
            raise at.key("weekday").error("only goes with until (e.g. until: '09:00', weekday: mon)")
        return WaitNode(nid, duration_ms=_duration(f["duration"], at.key("duration")))
    weekday = _choice(f["weekday"], at.key("weekday"), WEEKDAYS) if "weekday" in f else None
    return WaitNode(nid, until_min=_hhmm(f["until"], at.key("until")), weekday=weekday)


def _vars(raw: Any, at: _At) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        raise at.error(f"must be a mapping of names to strings, got {_show(raw)}")
    out = []
    for k, v in raw.items():
        if not isinstance(k, str) or not VAR_RE.fullmatch(k):
            raise at.error(f"variable name {_show(k)} must match {VAR_RE.pattern}")
        if not isinstance(v, str):
            raise at.key(k).error(f"must be a string (quote it), got {_show(v)}")
        out.append((k, v))
    return tuple(sorted(out))


def _send(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> SendNode:
    return SendNode(
        nid,
        _choice(f["channel"], at.key("channel"), CHANNELS),
        _str(f["template"], at.key("template"), TEMPLATE_RE),
        _vars(f.get("vars", {}), at.key("vars")),
    )


def _branch(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> BranchNode:
    conds = _list(f["if"], at.key("if"))
    if not conds:
        raise at.key("if").error("needs at least one condition")
    when = tuple(_condition(c, at.key("if").item(j)) for j, c in enumerate(conds))
    then = _nodes(f["then"], at.key("then"), depth + 1, ids, allow_empty=True)
    otherwise = _nodes(f.get("else", []), at.key("else"), depth + 1, ids, allow_empty=True)
    return BranchNode(nid, when, then, otherwise)


def _arm(raw: Any, at: _At, depth: int, ids: _Ids) -> Arm:
    f = _fields(raw, at, ("name", "weight"), ("then", "holdout"))
    name = _str(f["name"], at.key("name"), NODE_ID_RE)
    weight = _int(f["weight"], at.key("weight"), 1)
    holdout = _bool(f.get("holdout", False), at.key("holdout"))
    then = _nodes(f.get("then", []), at.key("then"), depth + 1, ids, allow_empty=True)
    if holdout and then:
        raise at.key("then").error("a holdout arm sends nothing: leave then out (or empty)")
    if not holdout and not then:
        raise at.key("then").error("needs at least one node (an arm that does nothing is `holdout: true`)")
    return Arm(name, weight, then, holdout)


def _ab_split(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> AbSplitNode:
    raw_arms = _list(f["arms"], at.key("arms"))
    if len(raw_arms) < 2:
        raise at.key("arms").error(f"needs at least 2 arms, got {len(raw_arms)}")
    arms: list[Arm] = []
    for j, raw in enumerate(raw_arms):
        here = at.key("arms").item(j)
        arm = _arm(raw, here, depth, ids)
        if any(a.name == arm.name for a in arms):
            raise here.key("name").error(f"duplicate arm name {arm.name!r}")
        if arm.holdout and any(a.holdout for a in arms):
            raise here.key("holdout").error("only one arm may be the holdout")
        arms.append(arm)
    return AbSplitNode(nid, tuple(arms))


def _tag(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> TagNode:
    action = _one_of(f, ("add", "remove"), at, "a tag node adds or removes one tag")
    return TagNode(nid, _name(f[action], at.key(action)), action)


def _task(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> TaskNode:
    return TaskNode(
        nid,
        _str(f["assignee"], at.key("assignee"), ASSIGNEE_RE, "owner or a user id (no spaces)"),
        _str(f["title"], at.key("title")),
        _duration(f["due"], at.key("due")) if "due" in f else None,
    )


def _ticket(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> TicketNode:
    return TicketNode(
        nid,
        _name(f["queue"], at.key("queue")),
        _str(f["title"], at.key("title")),
        _choice(f.get("priority", "normal"), at.key("priority"), TICKET_PRIORITIES),
    )


def _exit(f: Mapping[str, Any], nid: str, at: _At, depth: int, ids: _Ids) -> ExitNode:
    return ExitNode(nid)


# type -> (required keys, optional keys, parser); "type" and "id" go with every node.
_NODES: dict[str, tuple[tuple[str, ...], tuple[str, ...], Any]] = {
    "wait": ((), ("duration", "until", "weekday"), _wait),
    "send": (("channel", "template"), ("vars",), _send),
    "branch": (("if", "then"), ("else",), _branch),
    "ab_split": (("arms",), (), _ab_split),
    "tag": ((), ("add", "remove"), _tag),
    "task": (("assignee", "title"), ("due",), _task),
    "ticket": (("queue", "title"), ("priority",), _ticket),
    "exit": ((), (), _exit),
}


def _node(raw: Any, at: _At, depth: int, ids: _Ids) -> Node:
    if not isinstance(raw, Mapping):
        raise at.error(f"must be a mapping with a type, got {_show(raw)}")
    if "type" not in raw:
        raise at.error(f"missing required keys ['type'] (one of {', '.join(NODE_TYPES)})")
    kind = _choice(raw["type"], at.key("type"), NODE_TYPES)
    required, optional, parse = _NODES[kind]
    f = _fields(raw, at, ("type", *required), ("id", *optional))
    return parse(f, ids.claim(f, at), at, depth, ids)
