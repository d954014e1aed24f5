"""Journey definitions: what a file in ``config/journeys/`` may say, checked before anything runs.

One journey per file, YAML (``.yaml`` / ``.yml``) or JSON (``.json``), same structure
either way; the file name need not match the id. Every key is shown below; a key not
listed is an error, and so is a key given twice in one mapping::

    id: cart_abandoned            # required, [a-z][a-z0-9_]{0,63}, unique across the folder
    name: Cart abandoned          # required, free text
    priority: 20                  # required, integer 0..100: higher wins when a cap is nearly reached
    entry: {policy: once_per, days: 7}   # required: once | every_time | once_per (with days >= 1)
    max_active: 1                 # optional (default 1): instances running at once per profile
    quiet_hours:                  # optional: no sends in this local window (the profile's timezone)
      start: "21:00"              # HH:MM, quoted (YAML reads an unquoted 21:00 as the number 1260)
      end: "08:00"                # start > end spans midnight; start == end is refused
      action: defer               # optional (default defer): defer to `end` | drop the send
    caps:                         # optional: limits on this journey's sends per profile
      - {count: 2, per: 1d}                 # at most `count` sends in any `per`
      - {count: 1, per: 7d, channel: sms}   # channel optional (default: all channels)
    trigger:                      # required, exactly ONE of:
      event: {type: signup, where: [["props.amount", ">=", 500]]}
      absence: {after: add_to_cart, missing: order_paid, within: 30m}   # + optional where (on `after`)
      inactivity: {for: 14d}                            # no activity at all for this long
      score: {model: churn, threshold: churn_risk_high, direction: up}  # direction up | down (default up)
      segment: {enter: at_risk}
      tag: {added: high_value}                          # or {removed: high_value}
      date: {field: props.birthday, format: MM-DD, offset: -30d, at: "10:00"}
    nodes:                        # required, at least one; run in order
      - {type: wait, duration: 1h}
      - {type: wait, until: "09:00", weekday: mon}     # weekday optional: mon..sun
      - {type: send, channel: sms, template: welcome, vars: {name: "{{profile.name}}"}}
      - type: branch
        if: [{tag: high_value}, {feature: orders_30d, op: ">=", value: 3}]
        then: [{type: send, channel: wecom, template: vip_offer}]
        else: [{type: send, channel: email, template: new_user_guide}]   # optional
      - type: ab_split
        arms:
          - {name: a, weight: 45, then: [{type: send, channel: push, template: cart_reminder}]}
          - {name: b, weight: 45, then: [{type: send, channel: sms, template: cart_reminder}]}
          - {name: holdout, weight: 10, holdout: true}
      - {type: tag, add: welcomed}                      # or remove: NAME
      - {type: task, assignee: owner, due: 10m, title: Call the lead}
      - {type: ticket, queue: service, priority: high, title: Complaint follow-up}
      - {type: exit}

Values:

* Durations are ``flows.core.durations.parse_duration`` strings: ``90s``, ``30m``, ``1h``,
  ``14d``, ``2w``, ``1h30m``. Times of day are ``"HH:MM"`` (00:00..23:59), in the
  profile's timezone. Event types follow the event contract (``[a-z0-9_.:-]{1,64}``);
  tags, segments, models, thresholds, features and ticket queues are names
  ``[a-z][a-z0-9_]{0,63}``; templates ``[a-z0-9_.-]+``; channels ``sms``, ``email``,
  ``wecom``, ``push``, ``webhook``.
* ``where`` filters (event and absence triggers) have the shape of a feature's ``where``
  in ``config/features.toml``: ``[field, op, value]`` with field ``props.<name>`` or one of
  type, source, profileId, eventId; op one of ``flows.features.declarations.OPS``; ``>``/``>=``/``<``
  /``<=`` need a number, ``in`` a list. They parse to ``flows.features.declarations.Condition``, so
  the features' matcher applies unchanged.
* Branch conditions (``if``, all must hold), each ONE of: ``{tag: NAME}``,
  ``{not_tag: NAME}``, ``{segment: NAME}``, ``{feature: NAME, op, value}`` and
  ``{score: MODEL, op, value}`` (op one of ``flows.core.conditions.COMPARE``, a number; a score is a
  probability 0..1), ``{prop: FIELD, op, value}`` (the trigger event's fields, as in
  ``where``).
* Triggers. ``absence``: an ``after`` event not followed by a ``missing`` one within
  ``within`` (they must differ). ``date``: ``field`` is a dotted path to a date the profile
  carries, in ``format`` ``MM-DD`` (every year) or ``YYYY-MM-DD`` (once); the journey
  fires ``offset`` (whole days, signed, default 0) from that date at ``at`` (default
  ``"09:00"``). ``score``: ``up`` fires when the model's score crosses above the named
  threshold, ``down`` when it falls back below its reset level.
* Nodes. Each has a ``type`` and an optional ``id`` (``[a-z0-9_]{1,64}``, unique in the
  journey). Without one it gets an id from its position: ``nodes[2].then[0]`` is
  ``n2_then0``, ``nodes[3].arms[1].then[0]`` is ``n3_arms1_then0``. Those change when
  nodes are inserted before it, so give explicit ids to nodes of a journey that will be
  edited while profiles are in it. ``wait`` has exactly one of ``duration`` and ``until``
  (``weekday`` only with ``until``). ``send``: ``vars`` is an optional map of names
  (``[A-Za-z_][A-Za-z0-9_]*``) to strings. ``branch``: ``then`` is required and may be
  empty, ``else`` optional. ``ab_split``: at least two arms with unique names
  (``[a-z0-9_]{1,64}``) and positive integer weights (an arm's share is its weight over
  the total); every arm has a non-empty ``then`` except the holdout (at most one arm,
  ``holdout: true``), which has none: its profiles leave the journey there, so they are a
  clean control group. After a branch or an arm, the journey goes on with the node after
  the branch / split. ``tag``: exactly one of ``add`` and ``remove``. ``task``:
  ``assignee`` is ``owner`` (the profile's owner) or a user id; ``due`` optional.
  ``ticket``: ``priority`` low | normal | high (default normal). ``exit`` ends the
  journey and may only be the last node of its list. Node lists nest at most
  ``MAX_DEPTH`` (8) deep, the top-level list being depth 1.

A bad file is refused whole with ``ConfigError("{file}: {path}: {what}")``, the path
being where inside the file (``nodes[2].then[0].channel``); a folder loads all-or-nothing.
``to_canonical`` gives the parsed definition back as plain data (every default spelled
out, every id explicit), which parses to an equal ``Journey``: that is what is stored in
Redis, and what ``Journey.fingerprint`` hashes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson
import yaml

from flows.core.conditions import COMPARE, OPS, TOP_FIELDS
from flows.core.conditions import Condition as EventCondition
from flows.core.durations import DAY_MS, format_duration, parse_duration
from flows.core.errors import ConfigError
from flows.features.declarations import NAME_RE

CHANNELS = ("sms", "email", "wecom", "push", "webhook")
ENTRY_POLICIES = ("once", "every_time", "once_per")
QUIET_ACTIONS = ("defer", "drop")
DIRECTIONS = ("up", "down")
DATE_FORMATS = ("MM-DD", "YYYY-MM-DD")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TICKET_PRIORITIES = ("low", "normal", "high")
TRIGGER_KINDS = ("event", "absence", "inactivity", "score", "segment", "tag", "date")
NODE_TYPES = ("wait", "send", "branch", "ab_split", "tag", "task", "ticket", "exit")
MAX_DEPTH = 8
SUFFIXES = (".yaml", ".yml", ".json")
EVENT_TYPE_RE = re.compile(r"[a-z0-9_.:-]{1,64}")  # as in the event contract
NODE_ID_RE = re.compile(r"[a-z0-9_]{1,64}")
TEMPLATE_RE = re.compile(r"[a-z0-9_.-]{1,128}")
ASSIGNEE_RE = re.compile(r"\S{1,128}")  # "owner" or a user id
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
HHMM_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


# --- the parsed definition ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No sends from `start_min` to `end_min` (minutes after local midnight; start > end
    spans midnight): a send due inside is deferred to the end, or dropped."""

    start_min: int
    end_min: int
    action: str = "defer"


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `count` sends of this journey per profile in any `per_ms`, on `channel`
    (None: all channels together)."""

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
Condition = TagCondition | SegmentCondition | FeatureCondition | ScoreCondition | PropCondition
Node = WaitNode | SendNode | BranchNode | AbSplitNode | TagNode | TaskNode | TicketNode | ExitNode


@dataclass(frozen=True, slots=True)
class Journey:
    """One validated journey. Equality compares the definition only: `source` (the file)
    and `version` (set by the Redis loader) are left out."""

    id: str
    name: str
    priority: int
    entry: str  # once | every_time | once_per
    entry_days: int  # once_per: days before the profile may enter again; else 0
    max_active: int
    quiet_hours: QuietHours | None
    caps: tuple[Cap, ...]
    trigger: Trigger
    nodes: tuple[Node, ...]
    source: str = field(default="<memory>", compare=False)
    version: int = field(default=0, compare=False)

    def fingerprint(self) -> str:
        """16 hex digits of the sha256 of the canonical JSON: changes with any part of the
        definition, not with the file's format, layout, comments or key order."""
        text = orjson.dumps(to_canonical(self), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(text).hexdigest()[:16]


# --- reading: where we are, and small typed getters -------------------------------------


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
    return _str(v, at, EVENT_TYPE_RE, "[a-z0-9_.:-]{1,64} (an event type)")


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


# --- triggers -----------------------------------------------------------------------------


def _where(raw: Any, at: _At) -> tuple[EventCondition, ...]:
    out = []
    for j, cond in enumerate(_list(raw, at)):
        here = at.item(j)
        if not isinstance(cond, list | tuple) or len(cond) != 3:
            raise here.error(f"must be [field, op, value], got {_show(cond)}")
        fld = _field_path(cond[0], here)
        op, value = _compared(cond[1], cond[2], here, here, scalars=True)
        out.append(EventCondition(fld, op, value))
    return tuple(out)


def _event_trigger(raw: Any, at: _At) -> EventTrigger:
    f = _fields(raw, at, ("type",), ("where",))
    return EventTrigger(_event_type(f["type"], at.key("type")), _where(f.get("where", []), at.key("where")))


def _absence_trigger(raw: Any, at: _At) -> AbsenceTrigger:
    f = _fields(raw, at, ("after", "missing", "within"), ("where",))
    after = _event_type(f["after"], at.key("after"))
    missing = _event_type(f["missing"], at.key("missing"))
    if missing == after:
        raise at.key("missing").error(f"{missing!r} is the `after` event too: the two must differ")
    within = _duration(f["within"], at.key("within"))
    return AbsenceTrigger(after, missing, within, _where(f.get("where", []), at.key("where")))


def _inactivity_trigger(raw: Any, at: _At) -> InactivityTrigger:
    f = _fields(raw, at, ("for",))
    return InactivityTrigger(_duration(f["for"], at.key("for")))


def _score_trigger(raw: Any, at: _At) -> ScoreTrigger:
    f = _fields(raw, at, ("model", "threshold"), ("direction",))
    return ScoreTrigger(
        _name(f["model"], at.key("model")),
        _name(f["threshold"], at.key("threshold")),
        _choice(f.get("direction", "up"), at.key("direction"), DIRECTIONS),
    )


def _segment_trigger(raw: Any, at: _At) -> SegmentTrigger:
    f = _fields(raw, at, ("enter",))
    return SegmentTrigger(_name(f["enter"], at.key("enter")))


def _tag_trigger(raw: Any, at: _At) -> TagTrigger:
    f = _fields(raw, at, (), ("added", "removed"))
    change = _one_of(f, ("added", "removed"), at, "the tag that changes")
    return TagTrigger(_name(f[change], at.key(change)), change)


def _date_trigger(raw: Any, at: _At) -> DateTrigger:
    f = _fields(raw, at, ("field", "format"), ("offset", "at"))
    return DateTrigger(
        _str(f["field"], at.key("field"), PATH_RE, "a dotted path like props.birthday"),
        _choice(f["format"], at.key("format"), DATE_FORMATS),
        _offset_days(f["offset"], at.key("offset")) if "offset" in f else 0,
        _hhmm(f.get("at", "09:00"), at.key("at")),
    )


_TRIGGERS = {
    "event": _event_trigger, "absence": _absence_trigger, "inactivity": _inactivity_trigger,
    "score": _score_trigger, "segment": _segment_trigger, "tag": _tag_trigger, "date": _date_trigger,
}  # fmt: skip


def _trigger(raw: Any, at: _At) -> Trigger:
    f = _fields(raw, at, (), TRIGGER_KINDS)
    kind = _one_of(f, TRIGGER_KINDS, at, "a journey has exactly one trigger")
    return _TRIGGERS[kind](f[kind], at.key(kind))


# --- branch conditions ----------------------------------------------------------------------


def _condition(raw: Any, at: _At) -> Condition:
    kinds = ("tag", "not_tag", "segment", "feature", "score", "prop")
    _fields(raw, at, (), (*kinds, "op", "value"))
    kind = _one_of(raw, kinds, at, "the kind of condition")
    if kind in ("tag", "not_tag", "segment"):
        f = _fields(raw, at, (kind,))
        name = _name(f[kind], at.key(kind))
        return SegmentCondition(name) if kind == "segment" else TagCondition(name, kind == "tag")
    f = _fields(raw, at, (kind, "op", "value"))
    op, value = _compared(f["op"], f["value"], at.key("op"), at.key("value"), scalars=kind == "prop")
    if kind == "prop":
        return PropCondition(_field_path(f["prop"], at.key("prop")), op, value)
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


# --- the journey ------------------------------------------------------------------------------


def _entry(raw: Any, at: _At) -> tuple[str, int]:
    f = _fields(raw, at, ("policy",), ("days",))
    policy = _choice(f["policy"], at.key("policy"), ENTRY_POLICIES)
    if policy == "once_per":
        if "days" not in f:
            raise at.error("once_per needs days: N (how long before the profile may enter again)")
        return policy, _int(f["days"], at.key("days"), 1, 3650)
    if "days" in f:
        raise at.key("days").error(f"only once_per takes days, not {policy}")
    return policy, 0


def _quiet_hours(raw: Any, at: _At) -> QuietHours:
    f = _fields(raw, at, ("start", "end"), ("action",))
    start, end = _hhmm(f["start"], at.key("start")), _hhmm(f["end"], at.key("end"))
    if start == end:
        raise at.key("end").error("equals start: the quiet window would be empty")
    return QuietHours(start, end, _choice(f.get("action", "defer"), at.key("action"), QUIET_ACTIONS))


def _caps(raw: Any, at: _At) -> tuple[Cap, ...]:
    out = []
    for j, item in enumerate(_list(raw, at)):
        here = at.item(j)
        f = _fields(item, here, ("count", "per"), ("channel",))
        channel = _choice(f["channel"], here.key("channel"), CHANNELS) if "channel" in f else None
        out.append(Cap(_int(f["count"], here.key("count"), 1), _duration(f["per"], here.key("per")), channel))
    return tuple(out)


_JOURNEY_REQUIRED = ("id", "name", "priority", "entry", "trigger", "nodes")
_JOURNEY_OPTIONAL = ("max_active", "quiet_hours", "caps")


def parse_journey(data: Mapping[str, Any], source: str = "<memory>") -> Journey:
    """Validate one journey's data; the first problem raises ConfigError with source, path, what.

    >>> j = parse_journey({
    ...     "id": "hello", "name": "Hello", "priority": 1, "entry": {"policy": "once"},
    ...     "trigger": {"event": {"type": "signup"}},
    ...     "nodes": [{"type": "send", "channel": "sms", "template": "welcome"}],
    ... })
    >>> j.nodes
    (SendNode(id='n0', channel='sms', template='welcome', vars=()),)
    >>> parse_journey({**to_canonical(j), "priority": 101}, "x.yaml")
    Traceback (most recent call last):
    ...
    flows.core.errors.ConfigError: x.yaml: priority: must be an integer from 0 to 100, got 101
    """
    at = _At(source)
    if not isinstance(data, Mapping):
        raise at.error(f"must be a mapping (one journey per file), got {_show(data)}")
    f = _fields(data, at, _JOURNEY_REQUIRED, _JOURNEY_OPTIONAL)
    entry, entry_days = _entry(f["entry"], at.key("entry"))
    return Journey(
        id=_name(f["id"], at.key("id")),
        name=_str(f["name"], at.key("name")),
        priority=_int(f["priority"], at.key("priority"), 0, 100),
        entry=entry,
        entry_days=entry_days,
        max_active=_int(f.get("max_active", 1), at.key("max_active"), 1, 100),
        quiet_hours=_quiet_hours(f["quiet_hours"], at.key("quiet_hours")) if "quiet_hours" in f else None,
        caps=_caps(f.get("caps", []), at.key("caps")),
        trigger=_trigger(f["trigger"], at.key("trigger")),
        nodes=_nodes(f["nodes"], at.key("nodes"), 1, _Ids()),
        source=source,
    )


# --- files ------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML would keep
    the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (the last would silently win)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _read_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "top level"
        hint = ' (quote a value that starts with "{" or "[", e.g. "{{profile.name}}")'
        problem = f"{exc.problem or exc}{hint if 'unhashable' in str(exc.problem) else ''}"
        raise ConfigError(f"{path}: {where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: top level: not valid YAML: {exc}") from None


def _read_json(text: str, path: Path) -> Any:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    try:  # orjson keeps the last of duplicate keys silently: look for them once more
        json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: JSON: key {exc.args[0]!r} appears twice in one object") from None
    return data


def load_journey(path: Path | str) -> Journey:
    """Read and validate one journey file (by suffix: .yaml/.yml or .json)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{path}: not a journey file (use .yaml, .yml or .json)")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: journey file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    data = _read_json(text, path) if suffix == ".json" else _read_yaml(text, path)
    return parse_journey(data, str(path))


def journey_files(folder: Path | str) -> list[Path]:
    """The journey files of a folder, sorted by name (dot-files, other suffixes and
    sub-folders are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: journeys folder not found")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


def load_folder(path: Path | str) -> tuple[Journey, ...]:
    """Every journey of a folder, in file-name order; any bad file or an id defined twice
    refuses the whole folder."""
    journeys: list[Journey] = []
    where: dict[str, str] = {}
    for file in journey_files(path):
        j = load_journey(file)
        if j.id in where:
            raise ConfigError(f"{file}: id: journey id {j.id!r} is already defined in {where[j.id]}")
        where[j.id] = str(file)
        journeys.append(j)
    return tuple(journeys)


# --- back to plain data -----------------------------------------------------------------------


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
