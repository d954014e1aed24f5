"""Conditions on an event's fields and the comparisons that rules may use.

One comparison table serves feature filters, tag and segment rules, and journey
conditions. A `Condition` reads a top-level field (``type``, ``source``, ``profileId``,
``eventId``) or anything under ``props``; `matcher` compiles a tuple of them into one
predicate.

>>> from flows.core.contract import Event
>>> ev = Event("e1", "p1", "order_paid", 0, "app", {"amount": 30.0, "channel": "web"},
...           {}, {}, 0, "doc", 0, 0)
>>> match = matcher((Condition("props.amount", ">=", 20),
...                  Condition("props.channel", "in", frozenset({"web"}))))
>>> match(ev), matcher((Condition("type", "==", "signup"),))(ev)
(True, False)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt,
    ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}  # fmt: skip
OPS = (*COMPARE, "in")  # what an event condition may use
ORDERED = frozenset({">", ">=", "<", "<="})  # need a number on both sides

# Fields of an event a condition may read: top-level ones, or anything under props.
TOP_FIELDS = frozenset({"type", "source", "profileId", "eventId"})
_TOP_INDEX = {"type": 2, "source": 4, "profileId": 1, "eventId": 0}  # positions in `Event`


@dataclass(frozen=True, slots=True)
class Condition:
    field: str  # "props.channel" or a top-level field
    op: str
    value: Any


def is_number(v: Any) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return (type(v) is float and math.isfinite(v)) or type(v) is int


def field_ok(path: str) -> bool:
    """Whether a condition may read `path`."""
    if path in TOP_FIELDS:
        return True
    parts = path.split(".")
    return len(parts) >= 2 and parts[0] == "props" and all(parts[1:])


def field_getter(path: str) -> Callable[[Any], Any]:
    """A function reading `path` from an event (None when absent)."""
    if path in TOP_FIELDS:
        attr = _TOP_INDEX[path]
        return lambda ev: ev[attr]
    keys: Sequence[str] = path.split(".")[1:]
    if len(keys) == 1:
        key = keys[0]
        return lambda ev: ev.props.get(key)

    def _get(ev: Any) -> Any:
        node: Any = ev.props
        for k in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(k)
        return node

    return _get


def matcher(conds: tuple[Condition, ...]) -> Callable[[Any], bool] | None:
    """One predicate for all of `conds` (None when there are none: everything matches).

    An absent field fails every condition; an ordered comparison needs a number; ``in``
    never matches a dict or a list.
    """
    if not conds:
        return None
    compiled = []
    for c in conds:
        get = field_getter(c.field)
        compiled.append((get, None if c.op == "in" else COMPARE[c.op], c.value))

    def match(ev: Any) -> bool:
        for get, cmp, val in compiled:
            got = get(ev)
            if cmp is None:
                if isinstance(got, dict | list) or got not in val:
                    return False
            elif got is None:
                return False
            else:
                if cmp not in (operator.eq, operator.ne) and not is_number(got):
                    return False
                try:
                    if not cmp(got, val):
                        return False
                except TypeError:
                    return False
        return True

    return match
