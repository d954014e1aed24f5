"""A journey as the engine holds it: frozen dataclasses for the trigger, the branch
conditions, the nodes and the journey itself, the values their fields take, and a walk
over the node tree.

Built by `rules.journeys.parse` (which also documents the file format) and turned back
into plain data by `rules.journeys.canonical`. Durations are in milliseconds, times of day
in minutes after local midnight.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flows.core.conditions import Condition as EventCondition

CHANNELS = ("sms", "email", "wecom", "push", "webhook")  # where a send (and a guarded action) goes
ENTRY_POLICIES = ("once", "every_time", "once_per")
QUIET_ACTIONS = ("defer", "drop")
DIRECTIONS = ("up", "down")
DATE_FORMATS = ("MM-DD", "YYYY-MM-DD")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # in `datetime.weekday()` order
TICKET_PRIORITIES = ("low", "normal", "high")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No sends from `start_min` to `end_min` (minutes after local midnight; start > end
    spans midnight): a send due inside is deferred to the end, or dropped."""

    start_min: int
    end_min: int
    action: str = "defer"


@dataclass(frozen=True, slots=True)
class JourneyCap:
    """A cap a journey declares: at most `count` sends of this journey per profile in any
    `per_ms`, on `channel` (None: all channels together). The guards count it as a
    journey-scope `rules.policy.Cap` (`rules.actions.caps_for`)."""

    count: int
    per_ms: int
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class EventTrigger:
    KIND: ClassVar[str] = "event"
    type: str
    where: tuple[EventCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class AbsenceTrigger:
    """An `after` event (passing `where`) with no `missing` event within `within_ms`."""

    KIND: ClassVar[str] = "absence"
    after: str
    missing: str
    within_ms: int
    where: tuple[EventCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class InactivityTrigger:
    KIND: ClassVar[str] = "inactivity"
    for_ms: int


@dataclass(frozen=True, slots=True)
class ScoreTrigger:
    KIND: ClassVar[str] = "score"
    model: str
    threshold: str
    direction: str = "up"


@dataclass(frozen=True, slots=True)
class SegmentTrigger:
    KIND: ClassVar[str] = "segment"
    enter: str


@dataclass(frozen=True, slots=True)
class TagTrigger:
    KIND: ClassVar[str] = "tag"
    tag: str
    change: str  # "added" | "removed"


@dataclass(frozen=True, slots=True)
class DateTrigger:
    """Fires `offset_days` from the date in `field` (every year for MM-DD), at `at_min`
    minutes after local midnight."""

    KIND: ClassVar[str] = "date"
    field: str
    format: str
    offset_days: int = 0
    at_min: int = 9 * 60


@dataclass(frozen=True, slots=True)
class TagCondition:
    """The profile has the tag (`present`), or has not."""

    KIND: ClassVar[str] = "tag"
    tag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SegmentCondition:
    KIND: ClassVar[str] = "segment"
    segment: str


@dataclass(frozen=True, slots=True)
class FeatureCondition:
    """A feature of the profile compared with a number (an absent feature fails)."""

    KIND: ClassVar[str] = "feature"
    feature: str
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class ScoreCondition:
    """A model's latest score for the profile compared with a probability (none fails)."""

    KIND: ClassVar[str] = "score"
    model: str
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class PropCondition:
    """A field of the trigger event, as in a ``where`` filter (``in``: a frozenset)."""

    KIND: ClassVar[str] = "prop"
    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class AttributeCondition:
    """An attribute of the profile's record (``identify`` / ``profile_updated`` events)
    compared as a trigger's prop is; on a list attribute ``==`` / ``!=`` test membership
    and ``in`` any overlap. An unknown or PII attribute fails."""

    KIND: ClassVar[str] = "attribute"
    name: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class QuietCondition:
    """No qualifying activity for at least `for_ms` before the decision: none of the
    profile's own events of `types` (empty: any of its own events) in that span. A profile
    with no such event yet is quiet."""

    KIND: ClassVar[str] = "quiet_for"
    for_ms: int
    types: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WaitNode:
    """Waits `duration_ms`, or until the next `until_min` local time (on `weekday`)."""

    KIND: ClassVar[str] = "wait"
    id: str
    duration_ms: int | None = None
    until_min: int | None = None
    weekday: str | None = None


@dataclass(frozen=True, slots=True)
class SendNode:
    KIND: ClassVar[str] = "send"
    id: str
    channel: str
    template: str
    vars: tuple[tuple[str, str], ...] = ()  # sorted by name


@dataclass(frozen=True, slots=True)
class BranchNode:
    """Runs `then` when every condition of `when` holds, else `otherwise`."""

    KIND: ClassVar[str] = "branch"
    id: str
    when: tuple[Condition, ...]
    then: tuple[Node, ...]
    otherwise: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    weight: int
    then: tuple[Node, ...] = ()
    holdout: bool = False


@dataclass(frozen=True, slots=True)
class AbSplitNode:
    """Sends each profile down one arm, with chances proportional to the weights."""

    KIND: ClassVar[str] = "ab_split"
    id: str
    arms: tuple[Arm, ...]


@dataclass(frozen=True, slots=True)
class TagNode:
    KIND: ClassVar[str] = "tag"
    id: str
    tag: str
    action: str  # "add" | "remove"


@dataclass(frozen=True, slots=True)
class TaskNode:
    KIND: ClassVar[str] = "task"
    id: str
    assignee: str  # "owner" or a user id
    title: str
    due_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TicketNode:
    KIND: ClassVar[str] = "ticket"
    id: str
    queue: str
    title: str
    priority: str = "normal"


@dataclass(frozen=True, slots=True)
class ExitNode:
    KIND: ClassVar[str] = "exit"
    id: str


Trigger = (
    EventTrigger
    | AbsenceTrigger
    | InactivityTrigger
    | ScoreTrigger
    | SegmentTrigger
    | TagTrigger
    | DateTrigger
)
Condition = (
    TagCondition | SegmentCondition | FeatureCondition | ScoreCondition | PropCondition | AttributeCondition
    | QuietCondition
)  # fmt: skip
Node = WaitNode | SendNode | BranchNode | AbSplitNode | TagNode | TaskNode | TicketNode | ExitNode


@dataclass(frozen=True, slots=True)
class Journey:
    """One validated journey. Equality compares the definition only: `source` (the file)
    and `version` (set by the Redis loader) are left out, as they are from its
    `rules.journeys.canonical.fingerprint`."""

    id: str
    name: str
    priority: int
    entry: str  # once | every_time | once_per
    entry_days: int  # once_per: days before the profile may enter again; else 0
    max_active: int
    quiet_hours: QuietHours | None
    caps: tuple[JourneyCap, ...]
    trigger: Trigger
    nodes: tuple[Node, ...]
    source: str = field(default="<memory>", compare=False)
    version: int = field(default=0, compare=False)
    # entry conditions (``entry.if``): all must hold when the trigger fires; one that only
    # time can make true (`QuietCondition`) holds the entry until it does
    entry_if: tuple[Condition, ...] = ()


def quiet_types(conds: tuple[Condition, ...]) -> frozenset[str]:
    """The event types the quiet conditions among `conds` read ("" for any event)."""
    out: set[str] = set()
    for c in conds:
        if isinstance(c, QuietCondition):
            out.update(c.types or ("",))
    return frozenset(out)


# --- traversal --------------------------------------------------------------------------------


def children(node: Node) -> tuple[tuple[Node, ...], ...]:
    """The node lists nested in a node: branch then / else, each arm's then; () for others."""
    if isinstance(node, BranchNode):
        return (node.then, node.otherwise)
    if isinstance(node, AbSplitNode):
        return tuple(a.then for a in node.arms)
    return ()


def _walk(nodes: tuple[Node, ...]) -> Iterator[tuple[str, Node]]:
    for node in nodes:
        yield node.id, node
        for nested in children(node):
            yield from _walk(nested)


def walk(journey: Journey) -> Iterator[tuple[str, Node]]:
    """Every ``(node_id, node)`` depth-first in file order: a node, then what it nests,
    then its next sibling."""
    return _walk(journey.nodes)
