"""Journeys as they run for one profile: triggers, entry policy, node steps, waits in event time.

Pure: the profile's events, its tags, segment, features and latest scores, the live
journeys and an event-time "now" go in; `Intent`s (what a journey wants to do: send, a
holdout record, a task, a ticket, a tag change) come out. The guards (`rules.guards`) then
decide each send atomically in Redis; nothing here talks to a server.

* A journey is compiled once per version into a flat program (`compile_journey`): a
  profile's instance is a program counter, pinned to the version it entered with.
* **Triggers**: ``event`` (type and filters), ``absence`` (X not followed by Y within T: the
  latest X arms a deadline, Y after X disarms it, the deadline passing in event time fires
  with X as the trigger event — never after Y arrived), ``inactivity`` (no event for T),
  ``score`` (the engine's ``score_crossed`` events), ``segment`` (``segment_changed``) and
  ``tag`` (``tag_added`` / ``tag_removed``), ``date`` (a date the profile's events carry,
  e.g. ``props.birthday``: ``offset`` days from it at a local time in the profile's
  timezone, every year for ``MM-DD``; only occurrences after the date became known fire).
* **Entry**: a disabled or paused journey takes no one; ``once`` ever, ``once_per`` N days, or
  ``every_time``; at most ``max_active`` running instances per profile.
* **Nodes**: ``wait`` (a duration, or until a local time / weekday in the profile's
  timezone), ``send`` (deferred to the end of the journey's quiet hours, or dropped, in the
  profile's timezone), ``branch`` (all conditions over tags, segment, features, scores and
  the trigger event's props), ``ab_split`` (deterministic by a stable hash of profile and
  journey; the holdout arm records a holdout decision and leaves), ``tag`` (journey tags,
  kept here and announced as ``tag_added`` / ``tag_removed`` events), ``task``, ``ticket``,
  ``exit``. After a branch or an arm the journey continues with the next node.
* A paused journey's instances hold where they are; a disabled journey's exit at their next
  step.
* Bounded: at most `MAX_INSTANCES` running instances and `MAX_HISTORY` entry records per
  profile.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flows.core.conditions import COMPARE, matcher
from flows.core.contract import ENGINE, Event, engine_event
from flows.core.messages import Intent
from rules.calendar import quiet_hours_decision
from rules.journeys.canonical import fingerprint
from rules.journeys.model import (
    AbsenceTrigger,
    AbSplitNode,
    BranchNode,
    DateTrigger,
    EventTrigger,
    ExitNode,
    FeatureCondition,
    InactivityTrigger,
    Journey,
    PropCondition,
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
    WaitNode,
)
from rules.policy import action_id

MAX_INSTANCES = 20
MAX_HISTORY = 64
MAX_STEPS = 256  # per instance per wake-up: a guard against a journey that loops
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Instr:
    kind: str  # wait | send | branch | split | tag | task | ticket | exit
    node: Any
    next: int  # pc after this one (-1 = end)
    targets: tuple[int, ...] = ()  # branch: (then, else); split: one per arm (-2 = holdout)


def compile_journey(j: Journey) -> tuple[Instr, ...]:
    """The journey as a flat program; pc 0 is the first node, -1 the end."""
    prog: list[Any] = []

    def emit(nodes: tuple[Any, ...], cont: int) -> int:
        """Emit `nodes` ending in `cont`; returns the first pc (or `cont` when empty)."""
        if not nodes:
            return cont
        start = len(prog)
        prog.extend([None] * len(nodes))
        for i, node in enumerate(nodes):
            pc = start + i
            nxt = start + i + 1 if i + 1 < len(nodes) else cont
            if isinstance(node, BranchNode):
                then = emit(node.then, nxt)
                other = emit(node.otherwise, nxt)
                prog[pc] = Instr("branch", node, nxt, (then, other))
            elif isinstance(node, AbSplitNode):
                targets = tuple(-2 if arm.holdout else emit(arm.then, nxt) for arm in node.arms)
                prog[pc] = Instr("split", node, nxt, targets)
            else:
                kind = {
                    WaitNode: "wait", SendNode: "send", TagNode: "tag", TaskNode: "task",
                    TicketNode: "ticket", ExitNode: "exit",
                }[type(node)]  # fmt: skip
                prog[pc] = Instr(kind, node, -1 if kind == "exit" else nxt)
        return start

    emit(j.nodes, -1)
    return tuple(prog)


_PROGRAMS: dict[tuple[str, int, str], tuple[Instr, ...]] = {}


def program(j: Journey) -> tuple[Instr, ...]:
    key = (j.id, j.version, fingerprint(j))
    got = _PROGRAMS.get(key)
    if got is None:
        got = _PROGRAMS[key] = compile_journey(j)
    return got


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


@dataclass(slots=True)
class Instance:
    journey_id: str
    version: int
    pc: int
    trigger_event_id: str
    trigger_props: dict[str, Any]
    entered_ms: int
    resume_ms: int = -1  # waiting until this event time (-1: not waiting)
    variant: str = ""
    deferred: bool = False  # the send at pc waited for the quiet hours to end


@dataclass
class Context:
    """What branch conditions and sends read about the profile."""

    tags: frozenset[str] = frozenset()
    segment: str = ""
    values: Mapping[str, float] = field(default_factory=dict)
    scores: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Live:
    """The journeys the engine runs now (from `rules.store.JourneyCatalog`)."""

    current: Mapping[str, Any]  # journey id -> store.Live(journey, state)
    version: Callable[[str, int], Journey]


class ProfileJourneys:
    """One profile's journeys: running instances, entry history, armed absence watches."""

    __slots__ = ("dates", "entries", "instances", "journey_tags", "last_event_ms", "sent_by", "tz", "watches")

    def __init__(self) -> None:
        self.instances: list[Instance] = []
        self.entries: dict[str, int] = {}  # journey id -> event time of the last entry
        self.watches: dict[str, tuple[str, int, dict[str, Any]]] = {}  # absence: id -> (X id, X ts, props)
        self.journey_tags: set[str] = set()
        self.last_event_ms = -1
        self.tz = "UTC"
        self.sent_by: dict[str, tuple[str, int]] = {}  # template -> (journey, version) of the last send
        self.dates: dict[str, tuple[str, int]] = {}  # date-trigger field -> (value, event time learned)

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self.instances, self.entries, self.watches, self.journey_tags, self.last_event_ms, self.tz,
            self.sent_by, self.dates,
        )  # fmt: skip

    def __setstate__(self, st: tuple[Any, ...]) -> None:
        (
            self.instances, self.entries, self.watches, self.journey_tags, self.last_event_ms, self.tz,
            self.sent_by, self.dates,
        ) = st  # fmt: skip

    # ------------------------------------------------------------------ time

    def next_due(self, live: Live) -> int:
        """Event time of the next thing that happens without a new event (-1: nothing)."""
        due = [i.resume_ms for i in self.instances if i.resume_ms >= 0]
        for jid, (_, ts, _) in self.watches.items():
            lj = live.current.get(jid)
            if lj is not None and isinstance(lj.journey.trigger, AbsenceTrigger):
                due.append(ts + lj.journey.trigger.within_ms)
        for jid, lj in live.current.items():
            trig = lj.journey.trigger
            if isinstance(trig, InactivityTrigger) and 0 <= self.last_event_ms > self.entries.get(
                f"{jid}#idle", -1
            ):
                due.append(self.last_event_ms + trig.for_ms)
            elif isinstance(trig, DateTrigger) and lj.state == "enabled":
                f = self._date_fire(jid, trig)
                if f is not None:
                    due.append(f)
        return min(due) if due else -1

    # ------------------------------------------------------------------ events

    def on_events(
        self, pid: str, events: list[Event], live: Live, ctx: Context, received_ms: int
    ) -> list[Intent | Event]:
        """Fold in the profile's events (customer and engine events alike), in order."""
        out: list[Intent | Event] = []
        for e in events:
            # what earlier events set in motion happens first: their sends precede this event
            if self.instances or self.watches:
                self.advance(pid, e.ts_ms, live, ctx, received_ms, out)
            tz = e.props.get("timezone") if e.props else None
            if isinstance(tz, str) and tz != self.tz and _valid_tz(tz):
                self.tz = tz
            if e.origin != ENGINE:
                self.last_event_ms = max(self.last_event_ms, e.ts_ms)
                if e.type in SUPPRESSING:
                    out.append(_suppression(pid, e, received_ms))
                if e.type == "complaint":
                    blamed = self._blame(e)
                    if blamed is not None:
                        out.append(_complaint(pid, e, blamed, received_ms))
            for jid, lj in live.current.items():
                j = lj.journey
                trig = j.trigger
                if isinstance(trig, AbsenceTrigger):
                    self._absence(jid, trig, e)
                    continue
                if isinstance(trig, DateTrigger):
                    v = _prop(e, trig.field)
                    known = self.dates.get(trig.field, ("",))[0]
                    if isinstance(v, str) and v != known and _parse_date(v, trig.format) is not None:
                        self.dates[trig.field] = (v, e.ts_ms)
                    continue
                if _fires(trig, e) and lj.state == "enabled":
                    self._enter(pid, j, e.event_id, e.props or {}, e.ts_ms, ctx, received_ms, live, out)
        self.advance(pid, max(e.ts_ms for e in events), live, ctx, received_ms, out)
        return out

    def _date_fire(self, jid: str, trig: DateTrigger) -> int | None:
        """The next instant the date trigger fires for this profile (None: no date known)."""
        got = self.dates.get(trig.field)
        if got is None:
            return None
        value, learned = got
        after = max(learned, self.entries.get(jid, -1))
        return next_date_fire(value, trig.format, trig.offset_days, trig.at_min, self.tz, after)

    def _blame(self, e: Event) -> tuple[str, int, str] | None:
        """The journey a complaint is about: the last one that sent the template it names,
        else the last one that sent anything."""
        template = e.props.get("template") if e.props else None
        if isinstance(template, str) and template in self.sent_by:
            return (*self.sent_by[template], template)
        if self.sent_by:
            template = next(reversed(self.sent_by))
            return (*self.sent_by[template], template)
        return None

    def _absence(self, jid: str, trig: AbsenceTrigger, e: Event) -> None:
        if e.type == trig.after and (not trig.where or matcher(trig.where)(e)):  # type: ignore[misc]
            self.watches[jid] = (e.event_id, e.ts_ms, dict(e.props or {}))
        elif e.type == trig.missing:
            armed = self.watches.get(jid)
            if armed is not None and e.ts_ms >= armed[1]:
                del self.watches[jid]

    def advance(
        self,
        pid: str,
        now_ms: int,
        live: Live,
        ctx: Context | Callable[[int], Context],
        received_ms: int,
        out: list[Intent | Event],
    ) -> None:
        """Fire what is due by event time `now_ms` and move every running instance on,
        earliest first.

        A reminder due at 15:54 is decided before a welcome due at 16:01 however late the
        profile is woken (by its timer, by its next event, after a restart), so caps that
        journeys share go to the same sends in a live run, a replay and a recovery.
        `ctx` may be a function of the due time: then each step reads the profile as of
        its own due time, however late it is decided.
        """
        at = ctx if callable(ctx) else (lambda _t: ctx)
        done = -1
        for _ in range(MAX_STEPS):
            due = self.next_due(live)
            if due < 0 or due > now_ms or due <= done:  # nothing (more) due, or held (paused)
                break
            self._advance_to(pid, due, live, at(due), received_ms, out)
            done = due
        self._advance_to(pid, now_ms, live, at(now_ms), received_ms, out)

    def _advance_to(
        self, pid: str, now_ms: int, live: Live, ctx: Context, received_ms: int, out: list[Intent | Event]
    ) -> None:
        for jid, (xid, xts, props) in list(self.watches.items()):
            lj = live.current.get(jid)
            if lj is None or not isinstance(lj.journey.trigger, AbsenceTrigger):
                del self.watches[jid]
                continue
            if now_ms >= xts + lj.journey.trigger.within_ms:
                del self.watches[jid]
                if lj.state == "enabled":
                    at = xts + lj.journey.trigger.within_ms
                    self._enter(pid, lj.journey, xid, props, at, ctx, received_ms, live, out)
        for jid, lj in live.current.items():
            trig = lj.journey.trigger
            if isinstance(trig, InactivityTrigger) and self.last_event_ms >= 0 and lj.state == "enabled":
                at = self.last_event_ms + trig.for_ms
                if now_ms >= at and self.entries.get(f"{jid}#idle", -1) < self.last_event_ms:
                    self.entries[f"{jid}#idle"] = self.last_event_ms  # this silence is handled
                    self._enter(
                        pid, lj.journey, f"inactive:{self.last_event_ms}", {}, at, ctx, received_ms, live, out
                    )
        for jid, lj in live.current.items():
            trig = lj.journey.trigger
            if isinstance(trig, DateTrigger) and lj.state == "enabled":
                f = self._date_fire(jid, trig)
                if f is not None and f <= now_ms:
                    trigger_id = f"date:{trig.field}:{f}"
                    self._enter(pid, lj.journey, trigger_id, {}, f, ctx, received_ms, live, out)
                    self.entries[jid] = max(self.entries.get(jid, f), f)  # this occurrence is done
        keep: list[Instance] = []
        for inst in self.instances:
            if self._run(pid, inst, now_ms, live, ctx, received_ms, out):
                keep.append(inst)
        self.instances = keep

    # ------------------------------------------------------------------ entry

    def _enter(
        self, pid: str, j: Journey, trigger_id: str, props: Mapping[str, Any], ts: int, ctx: Context,
        received_ms: int, live: Live, out: list[Intent | Event],
    ) -> None:  # fmt: skip
        last = self.entries.get(j.id)
        if last is not None:
            if j.entry == "once":
                return
            if j.entry == "once_per" and ts - last < j.entry_days * 86_400_000:
                return
        if sum(1 for i in self.instances if i.journey_id == j.id) >= j.max_active:
            return
        if len(self.instances) >= MAX_INSTANCES:
            return
        self.entries[j.id] = ts
        if len(self.entries) > MAX_HISTORY:
            oldest = min(self.entries, key=self.entries.__getitem__)
            del self.entries[oldest]
        inst = Instance(j.id, j.version, 0, trigger_id, dict(props), ts, resume_ms=ts)
        self.instances.append(inst)

    # ------------------------------------------------------------------ running

    def _run(
        self, pid: str, inst: Instance, now_ms: int, live: Live, ctx: Context, received_ms: int,
        out: list[Intent | Event],
    ) -> bool:  # fmt: skip
        """Step `inst` as far as event time `now_ms` allows; False when it ended."""
        lj = live.current.get(inst.journey_id)
        if lj is None or lj.state == "disabled":
            return False
        if lj.state == "paused" or inst.resume_ms > now_ms:
            return True
        j = live.version(inst.journey_id, inst.version)
        prog = program(j)
        t = max(inst.resume_ms, inst.entered_ms)
        inst.resume_ms = -1
        for _ in range(MAX_STEPS):
            if inst.pc < 0:
                return False
            ins = prog[inst.pc]
            node = ins.node
            if ins.kind == "wait":
                until = _wait_until(node, t, self.tz)
                if until > now_ms:
                    inst.resume_ms = until
                    inst.pc = ins.next
                    return True
                t = until
                inst.pc = ins.next
            elif ins.kind == "send":
                if j.quiet_hours is not None and not inst.deferred:
                    q = j.quiet_hours
                    quiet, ends = quiet_hours_decision(t, self.tz, q.start_min, q.end_min)
                    if quiet and ends is not None:
                        kind = "quiet_hours_deferred" if q.action == "defer" else "quiet_hours_dropped"
                        out.append(self._intent(kind, pid, j, inst, node, t, received_ms, {"until_ms": ends}))
                        if q.action == "defer":
                            inst.deferred = True
                            if ends > now_ms:
                                inst.resume_ms = ends
                                return True
                            t = ends
                            continue
                        inst.pc = ins.next
                        continue
                inst.deferred = False
                detail = {"vars": render_vars(node.vars, pid, ctx, inst.trigger_props)}
                detail.update(_why(inst.trigger_props))
                out.append(self._intent("send", pid, j, inst, node, t, received_ms, detail))
                self.sent_by[node.template] = (j.id, j.version)
                if len(self.sent_by) > MAX_HISTORY:
                    del self.sent_by[next(iter(self.sent_by))]
                inst.pc = ins.next
            elif ins.kind == "branch":
                inst.pc = (
                    ins.targets[0]
                    if all(_holds(c, ctx, inst, self.journey_tags) for c in node.when)
                    else ins.targets[1]
                )
            elif ins.kind == "split":
                arm = arm_of(pid, j.id, tuple(a.weight for a in node.arms))
                inst.variant = node.arms[arm].name
                target = ins.targets[arm]
                if target == -2:
                    out.append(self._intent("holdout", pid, j, inst, node, t, received_ms, {}))
                    return False
                inst.pc = target
            elif ins.kind == "tag":
                add = node.action == "add"
                if (node.tag in self.journey_tags) != add:
                    (self.journey_tags.add if add else self.journey_tags.discard)(node.tag)
                    out.append(_tag_event(pid, node.tag, add, j.id, t, received_ms))
                inst.pc = ins.next
            elif ins.kind in ("task", "ticket"):
                detail = (
                    {"assignee": node.assignee, "due_ms": t + (node.due_ms or 0)}
                    if ins.kind == "task"
                    else {"queue": node.queue, "priority": node.priority}
                )
                out.append(self._intent(ins.kind, pid, j, inst, node, t, received_ms, detail))
                inst.pc = ins.next
            else:  # exit
                return False
        return False  # a journey that does not end: cut (MAX_STEPS)

    def _intent(
        self, kind: str, pid: str, j: Journey, inst: Instance, node: Any, ts: int, received_ms: int,
        detail: dict[str, Any],
    ) -> Intent:  # fmt: skip
        channel = node.channel if isinstance(node, SendNode) else kind if kind in ("task", "ticket") else ""
        template = node.template if isinstance(node, SendNode) else getattr(node, "title", "")
        node_id = (
            node.id if kind not in ("quiet_hours_deferred", "quiet_hours_dropped") else f"{node.id}:quiet"
        )
        aid = action_id(j.id, j.version, node_id, pid, inst.trigger_event_id)
        return Intent(
            kind, aid, pid, j.id, j.version, node.id, channel, template, inst.variant, j.priority,
            inst.trigger_event_id, ts, received_ms, detail,
        )  # fmt: skip


SUPPRESSING = frozenset({"unsubscribe", "complaint"})


def _suppression(pid: str, e: Event, received_ms: int) -> Intent:
    """An unsubscribe or a complaint: suppress the channel it names (every channel when it
    names none or an unknown one) before any later send is guarded."""
    channel = e.props.get("channel") if e.props else None
    channel = channel if channel in ("sms", "email", "wecom", "push", "webhook") else ""
    return Intent(
        "suppress", f"suppress:{e.event_id}", pid, "", 0, "", channel, e.type, "", 0, e.event_id, e.ts_ms,
        received_ms, {},
    )  # fmt: skip


_VAR = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def render_vars(
    pairs: tuple[tuple[str, str], ...], pid: str, ctx: Context, trigger: Mapping[str, Any]
) -> dict[str, str]:
    """Fill ``{{...}}`` placeholders: ``profile.id``, ``segment``, ``tags``,
    ``features.<name>``, ``score.<model>``, ``trigger.props.<field>``; anything unknown or
    without a value renders empty (identifiers are hashed in the engine: no names here).

    >>> render_vars((("hi", "{{ profile.id }}: {{features.orders_30d}} / {{trigger.props.sku}}"),),
    ...             "p1", Context(values={"orders_30d": 2.0}), {"sku": "S1"})
    {'hi': 'p1: 2 / S1'}
    """

    def one(m: re.Match[str]) -> str:
        path = m.group(1).split(".")
        v: Any = None
        if path == ["profile", "id"]:
            v = pid
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


def _why(trigger: Mapping[str, Any]) -> dict[str, Any]:
    """The score behind a decision, when a score crossing triggered the journey."""
    if "explanation" not in trigger:
        return {}
    return {
        "score": {k: trigger.get(k) for k in ("model", "threshold", "score", "version")},
        "explanation": trigger["explanation"],
    }


def _complaint(pid: str, e: Event, blamed: tuple[str, int, str], received_ms: int) -> Intent:
    """A complaint charged to the journey (and template) that last messaged the profile,
    for the complaint breaker (`rules.actions`)."""
    jid, version, template = blamed
    aid = f"complaint:{e.event_id}"
    return Intent(
        "complaint", aid, pid, jid, version, "", "", template, "", 0, e.event_id, e.ts_ms, received_ms, {}
    )


def _prop(e: Event, path: str) -> Any:
    parts = path.split(".")
    if parts[0] != "props":
        return None
    v: Any = e.props
    for part in parts[1:]:
        v = v.get(part) if isinstance(v, dict) else None
    return v


def _parse_date(value: str, fmt: str) -> tuple[int | None, int, int] | None:
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
    parsed = _parse_date(value, fmt)
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


def _valid_tz(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _fires(trig: Any, e: Event) -> bool:
    if isinstance(trig, EventTrigger):
        return e.type == trig.type and (not trig.where or matcher(trig.where)(e))  # type: ignore[misc]
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


def _holds(c: Any, ctx: Context, inst: Instance, journey_tags: set[str]) -> bool:
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
        v: Any = inst.trigger_props
        for part in c.field.split(".")[1:]:
            v = v.get(part) if isinstance(v, dict) else None
        if c.op == "in":
            return v in c.value
        if c.op in ("==", "!="):
            return (v == c.value) == (c.op == "==")
        return isinstance(v, int | float) and not isinstance(v, bool) and COMPARE[c.op](v, c.value)
    return False


def _wait_until(node: WaitNode, t: int, tz: str) -> int:
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


def _tag_event(pid: str, tag: str, add: bool, journey_id: str, ts: int, received_ms: int) -> Event:
    kind = "tag_added" if add else "tag_removed"
    props = {"tag": tag, "journey": journey_id}
    return engine_event(f"{kind}:{tag}:{pid}:{ts}:{journey_id}", pid, kind, ts, props, received_ms)
