"""Journey definitions: what a file in ``config/journeys/`` may say, checked before anything runs.

One journey per file, YAML (``.yaml`` / ``.yml``) or JSON (``.json``), same structure
either way; the file name need not match the id. Every key is shown below; a key not
listed is an error, and so is a key given twice in one mapping::

    id: cart_abandoned            # required, [a-z][a-z0-9_]{0,63}, unique across the folder
    name: Cart abandoned          # required, free text
    priority: 20                  # required, integer 0..100: higher wins when a cap is nearly reached
    entry: {policy: once_per, days: 7}   # required: once | every_time | once_per (with days >= 1)
    #   optional `if`: conditions (as a branch's, but no `prop`) that must hold at entry, e.g.
    #   entry: {policy: once_per, days: 30, if: [{quiet_for: 30d, types: [order_paid]}]}
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
  type, source, profileId, eventId; op one of ``flows.core.conditions.OPS``; ``>``/``>=``/``<``
  /``<=`` need a number, ``in`` a list. They parse to ``flows.core.conditions.Condition``, so
  the features' matcher applies unchanged.
* Branch conditions (``if``, all must hold), each ONE of: ``{tag: NAME}``,
  ``{not_tag: NAME}``, ``{segment: NAME}``, ``{feature: NAME, op, value}`` and
  ``{score: MODEL, op, value}`` (op one of ``flows.core.conditions.COMPARE``, a number; a score is a
  probability 0..1), ``{prop: FIELD, op, value}`` (the trigger event's fields, as in
  ``where``), ``{quiet_for: DURATION, types: [...]}`` (below).
* ``{quiet_for: DURATION, types: [...]}`` (a branch or entry condition): the profile's own
  events of ``types`` (omitted or ``[]``: any of its own events) have all been at least
  that long ago; a profile with none yet is quiet. As an entry condition it defers
  rather than refuses: a trigger that fires while every other entry condition holds but
  the profile is not quiet yet enters once it is (the conditions read again then), unless
  such an event comes first; one deferred entry per journey, the latest trigger's.
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
  ``MAX_DEPTH`` (8, `rules.journeys.parse_nodes`) deep, the top-level list being depth 1.

A bad definition is refused whole with ``ConfigError("{file}: {path}: {what}")``, the path
being where inside the file (``nodes[2].then[0].channel``). `parse_journey` checks the
top level, the trigger, entry, caps and quiet hours; `rules.journeys.parse_nodes` the
nodes and branch conditions; `rules.journeys.load` reads the files (a folder loads
all-or-nothing). `rules.journeys.canonical.to_canonical` gives the parsed definition
back as plain data, which parses to an equal ``Journey``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flows.core.conditions import Condition as EventCondition
from rules.journeys.checks import (
    _At,
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
    _offset_days,
    _one_of,
    _show,
    _str,
)
from rules.journeys.model import (
    CHANNELS,
    DATE_FORMATS,
    DIRECTIONS,
    ENTRY_POLICIES,
    QUIET_ACTIONS,
    AbsenceTrigger,
    Condition,
    DateTrigger,
    EventTrigger,
    InactivityTrigger,
    Journey,
    JourneyCap,
    PropCondition,
    QuietHours,
    ScoreTrigger,
    SegmentTrigger,
    TagTrigger,
    Trigger,
)
from rules.journeys.parse_nodes import _condition, _Ids, _nodes

TRIGGER_KINDS = ("event", "absence", "inactivity", "score", "segment", "tag", "date")
PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


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


_TRIGGERS: dict[str, Callable[[Any, _At], Trigger]] = {
    "event": _event_trigger, "absence": _absence_trigger, "inactivity": _inactivity_trigger,
    "score": _score_trigger, "segment": _segment_trigger, "tag": _tag_trigger, "date": _date_trigger,
}  # fmt: skip


def _trigger(raw: Any, at: _At) -> Trigger:
    f = _fields(raw, at, (), TRIGGER_KINDS)
    kind = _one_of(f, TRIGGER_KINDS, at, "a journey has exactly one trigger")
    return _TRIGGERS[kind](f[kind], at.key(kind))


# --- the journey ------------------------------------------------------------------------------


def _entry(raw: Any, at: _At) -> tuple[str, int, tuple[Condition, ...]]:
    f = _fields(raw, at, ("policy",), ("days", "if"))
    policy = _choice(f["policy"], at.key("policy"), ENTRY_POLICIES)
    raw_if = _list(f.get("if", []), at.key("if"))
    conds = tuple(_condition(c, at.key("if").item(j)) for j, c in enumerate(raw_if))
    for j, c in enumerate(conds):
        if isinstance(c, PropCondition):
            raise at.key("if").item(j).error("an entry condition reads the profile, not the trigger's props")
    if policy == "once_per":
        if "days" not in f:
            raise at.error("once_per needs days: N (how long before the profile may enter again)")
        return policy, _int(f["days"], at.key("days"), 1, 3650), conds
    if "days" in f:
        raise at.key("days").error(f"only once_per takes days, not {policy}")
    return policy, 0, conds


def _quiet_hours(raw: Any, at: _At) -> QuietHours:
    f = _fields(raw, at, ("start", "end"), ("action",))
    start, end = _hhmm(f["start"], at.key("start")), _hhmm(f["end"], at.key("end"))
    if start == end:
        raise at.key("end").error("equals start: the quiet window would be empty")
    return QuietHours(start, end, _choice(f.get("action", "defer"), at.key("action"), QUIET_ACTIONS))


def _caps(raw: Any, at: _At) -> tuple[JourneyCap, ...]:
    out = []
    for j, item in enumerate(_list(raw, at)):
        here = at.item(j)
        f = _fields(item, here, ("count", "per"), ("channel",))
        channel = _choice(f["channel"], here.key("channel"), CHANNELS) if "channel" in f else None
        count, per = _int(f["count"], here.key("count"), 1), _duration(f["per"], here.key("per"))
        out.append(JourneyCap(count, per, channel))
    return tuple(out)


_JOURNEY_REQUIRED = ("id", "name", "priority", "entry", "trigger", "nodes")
_JOURNEY_OPTIONAL = ("max_active", "quiet_hours", "caps")


def parse_journey(data: Mapping[str, Any], source: str = "<memory>") -> Journey:
    """Validate one journey's data; the first problem raises ConfigError with source, path, what.

    >>> from rules.journeys.canonical import to_canonical
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
    entry, entry_days, entry_if = _entry(f["entry"], at.key("entry"))
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
        entry_if=entry_if,
    )
