"""Journeys as they run for one profile: triggers, entry policy, node steps, waits in event time.

Pure: the profile's events, its tags, segment, features and latest scores, the live
journeys and an event-time "now" go in; `Intent`s (what a journey wants to do: send, a
holdout record, a task, a ticket, a tag change) come out. The guards (`rules.guards`) then
decide each send atomically in Redis; nothing here talks to a server.

* A journey is compiled once per version into a flat program (`rules.program`): a
  profile's instance is a program counter, pinned to the version it entered with.
  Triggers and branch conditions are evaluated by `rules.evaluate`, local times (waits,
  dates, quiet hours) computed by `rules.calendar`.
* **Triggers**: ``event`` (type and filters), ``absence`` (X not followed by Y within T: the
  latest X arms a deadline, Y after X disarms it, the deadline passing in event time fires
  with X as the trigger event — never after Y arrived), ``inactivity`` (no event for T),
  ``score`` (the engine's ``score_crossed`` events), ``segment`` (``segment_changed``) and
  ``tag`` (``tag_added`` / ``tag_removed``), ``date`` (a date the profile's events carry,
  e.g. ``props.birthday``: ``offset`` days from it at a local time in the profile's
  timezone, every year for ``MM-DD``; only occurrences after the date became known fire).
* **Entry**: a disabled or paused journey takes no one; ``once`` ever, ``once_per`` N days, or
  ``every_time``; at most ``max_active`` running instances per profile; the entry
  conditions (``entry.if``) must hold. A ``quiet_for`` condition that does not hold yet
  defers the entry to the moment it will (the latest qualifying event + its duration, an
  event-time deadline on the profile's timer), dropped if such an event comes first.
* **Nodes**: ``wait`` (a duration, or until a local time / weekday in the profile's
  timezone), ``send`` (deferred to the end of the journey's quiet hours, or dropped, in the
  profile's timezone), ``branch`` (all conditions over tags, segment, features, scores and
  the trigger event's props), ``ab_split`` (deterministic by a stable hash of profile and
  journey; the holdout arm records a holdout decision and leaves), ``tag`` (journey tags,
  kept here and announced as ``tag_added`` / ``tag_removed`` events), ``task``, ``ticket``,
  ``exit``. After a branch or an arm the journey continues with the next node.
* **Timezone**: a profile's is the latest valid ``props.timezone`` its events carried, else
  the catalog's default (``journeys.default_timezone``), read when used, so a changed
  default applies to every profile without one.
* A paused journey's instances hold where they are; a disabled journey's exit at their next
  step.
* Bounded: at most `MAX_INSTANCES` running instances and `MAX_HISTORY` entry records per
  profile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flows.core.contract import ENGINE, Event, engine_event, ts_or_none
from flows.core.durations import DAY_MS
from flows.core.messages import Intent
from rules.attributes import MAX_ATTRS, PROFILE_TYPES, Attributes, learn
from rules.calendar import next_date_fire, parse_date, quiet_hours_decision, valid_tz, wait_until
from rules.evaluate import Context, arm_of, event_prop, fires, holds, render_vars, where_matches
from rules.journeys.model import (
    CHANNELS,
    AbsenceTrigger,
    Condition,
    DateTrigger,
    Journey,
    QuietCondition,
    SendNode,
)
from rules.live import LiveJourneys
from rules.policy import action_id
from rules.program import program

MAX_INSTANCES = 20
MAX_HISTORY = 64
MAX_STEPS = 256  # per instance per wake-up: a guard against a journey that loops


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


class ProfileJourneys:
    """One profile's journeys: running instances, entry history, armed absence watches."""

    __slots__ = (
        "attrs", "dates", "entries", "instances", "journey_tags", "last_by_type", "last_event_ms", "pending",
        "sent_by", "tz", "watches",
    )  # fmt: skip

    def __init__(self) -> None:
        self.instances: list[Instance] = []
        self.entries: dict[str, int] = {}  # journey id -> event time of the last entry
        self.watches: dict[str, tuple[str, int, dict[str, Any]]] = {}  # absence: id -> (X id, X ts, props)
        self.journey_tags: set[str] = set()
        self.last_event_ms = -1
        self.tz = ""  # the profile's timezone from its events; "" = the catalog's default
        self.sent_by: dict[str, tuple[str, int]] = {}  # template -> (journey, version) of the last send
        self.dates: dict[str, tuple[str, int]] = {}  # date-trigger field -> (value, event time learned)
        # event type quiet conditions read -> its latest time; None until one is (memory)
        self.last_by_type: dict[str, int] | None = None
        # journey id -> (trigger id, props, ts) of an entry waiting for the profile to be quiet
        self.pending: dict[str, tuple[str, dict[str, Any], int]] | None = None
        self.attrs: Attributes | None = None  # the profile's record (rules.attributes)

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self.instances, self.entries, self.watches, self.journey_tags, self.last_event_ms, self.tz,
            self.sent_by, self.dates, self.last_by_type, self.pending, 1, self.attrs,
        )  # fmt: skip

    def __setstate__(self, st: tuple[Any, ...]) -> None:
        (
            self.instances, self.entries, self.watches, self.journey_tags, self.last_event_ms, self.tz,
            self.sent_by, self.dates,
        ) = st[:8]  # fmt: skip
        self.last_by_type, self.pending = st[8:10] if len(st) >= 10 else (None, None)  # older snapshots
        if len(st) < 11 and self.tz == "UTC":
            self.tz = ""  # older snapshots wrote UTC for "unknown": follow the configured default
        self.attrs = st[11] if len(st) >= 12 else None

    def running(self) -> str:
        """The running instances, for lookups: ``journey|version|pc|resume_ms|entered_ms``
        each (pc the next instruction of the journey's program, -1 done; resume_ms -1:
        not waiting), comma-separated; "" when none."""
        return ",".join(
            f"{i.journey_id}|{i.version}|{i.pc}|{i.resume_ms}|{i.entered_ms}" for i in self.instances
        )

    def hand_off(self) -> ProfileJourneys:
        """What a merged person's journeys hand to the person it merged into: the memory its
        events set (attributes, timezone, learned dates, quiet clocks). Running instances,
        entries, watches and sends stay and run out under this id: a timer may have moved
        them further before the merge than a replay after a crash would, so they are not
        a state a replay can hand over identically."""
        out = ProfileJourneys()
        out.attrs, out.tz, out.dates, out.last_by_type = self.attrs, self.tz, self.dates, self.last_by_type
        out.last_event_ms = self.last_event_ms
        return out

    def absorb(self, other: ProfileJourneys) -> None:
        """Take in a merged person's `hand_off`: per attribute the newer update; the later
        date learned and quiet clock (the stricter quiet rule); a timezone where none."""
        self.last_event_ms = max(self.last_event_ms, other.last_event_ms)
        self.tz = self.tz or other.tz
        for f, d in other.dates.items():
            if f not in self.dates or d[1] > self.dates[f][1]:
                self.dates[f] = d
        if other.last_by_type:
            mine = self.last_by_type if self.last_by_type is not None else {}
            for etype, ms in other.last_by_type.items():
                mine[etype] = max(ms, mine.get(etype, ms))
            self.last_by_type = mine
        if other.attrs:
            attrs = dict(self.attrs or {})
            for k, (v, ts) in other.attrs.items():
                if k not in attrs or ts > attrs[k][1]:
                    attrs[k] = (v, ts)
            if len(attrs) > MAX_ATTRS:  # bounded as `learn` bounds it: the newest kept
                attrs = dict(sorted(attrs.items(), key=lambda kv: kv[1][1])[-MAX_ATTRS:])
            self.attrs = attrs

    # ------------------------------------------------------------------ quiet

    def _last_of(self, c: QuietCondition) -> int:
        """The latest of the profile's own events a quiet condition reads (-1: none)."""
        if not c.types:
            return self.last_event_ms
        got = self.last_by_type or {}
        return max((got.get(t, -1) for t in c.types), default=-1)

    def _quiet_due(self, conds: tuple[Condition, ...]) -> int:
        """When every quiet condition among `conds` holds (event time)."""
        due = -1
        for c in conds:
            if isinstance(c, QuietCondition):
                last = self._last_of(c)
                if last >= 0:
                    due = max(due, last + c.for_ms)
        return due

    def _holds(self, c: Condition, ctx: Context, props: Mapping[str, Any], now_ms: int) -> bool:
        if isinstance(c, QuietCondition):
            last = self._last_of(c)
            return last < 0 or now_ms - last >= c.for_ms
        return holds(c, ctx, props, self.journey_tags, self.attrs)

    # ------------------------------------------------------------------ time

    def next_due(self, live: LiveJourneys) -> int:
        """Event time of the next thing that happens without a new event (-1: nothing)."""
        due = [i.resume_ms for i in self.instances if i.resume_ms >= 0]
        if self.watches:
            current = live.current
            for jid, (_, ts, _) in self.watches.items():
                lj = current.get(jid)
                if lj is not None and isinstance(lj.journey.trigger, AbsenceTrigger):
                    due.append(ts + lj.journey.trigger.within_ms)
        current = live.current
        for jid in self.pending or ():
            lj = current.get(jid)
            if lj is not None:
                due.append(self._quiet_due(lj.journey.entry_if))
        index = live.triggers
        if self.last_event_ms >= 0:
            for jid, _lj, itrig in index.inactivity:
                if self.last_event_ms > self.entries.get(f"{jid}#idle", -1):
                    due.append(self.last_event_ms + itrig.for_ms)
        for jid, lj, dtrig in index.date:
            if lj.state == "enabled":
                f = self._date_fire(jid, dtrig, live)
                if f is not None:
                    due.append(f)
        return min(due) if due else -1

    # ------------------------------------------------------------------ events

    def on_events(
        self, pid: str, events: list[Event], live: LiveJourneys, ctx: Context, received_ms: int
    ) -> list[Intent | Event]:
        """Fold in the profile's events (customer and engine events alike), in order."""
        out: list[Intent | Event] = []
        for e in events:
            # what earlier events set in motion happens first: their sends precede this event
            if self.instances or self.watches:
                self.advance(pid, e.ts_ms, live, ctx, received_ms, out)
            tz = e.props.get("timezone") if e.props else None
            if isinstance(tz, str) and tz != self.tz and valid_tz(tz):
                self.tz = tz
            if e.origin != ENGINE:
                self.last_event_ms = max(self.last_event_ms, e.ts_ms)
                if e.type in live.triggers.quiet_types:
                    seen = self.last_by_type
                    if seen is None:
                        seen = self.last_by_type = {}
                    seen[e.type] = max(seen.get(e.type, -1), e.ts_ms)
                if self.pending:
                    self._unpend(e, live)
                if e.type in SUPPRESSING:
                    out.append(_suppression(pid, e, received_ms))
                elif e.type in CONSENTING:
                    out.append(_consent(pid, e, received_ms))
                elif e.type in PROFILE_TYPES:
                    self.attrs = learn(self.attrs, e)
                    agreed = e.props.get("consent") if e.props else None
                    if isinstance(agreed, dict):
                        out.append(_agreed(pid, e, agreed, received_ms))
                if e.type == "complaint":
                    blamed = self._blame(e)
                    if blamed is not None:
                        out.append(_complaint(pid, e, blamed, received_ms))
            index = live.triggers
            for jid, _lj, atrig in index.absence:
                self._absence(jid, atrig, e)
            for _jid, _lj, dtrig in index.date:
                v = event_prop(e, dtrig.field)
                known = self.dates.get(dtrig.field, ("",))[0]
                if isinstance(v, str) and v != known and parse_date(v, dtrig.format) is not None:
                    self.dates[dtrig.field] = (v, e.ts_ms)
            for _jid, lj in index.by_event.get(e.type, ()):
                j = lj.journey
                if fires(j.trigger, e) and lj.state == "enabled":
                    self._enter(pid, j, e.event_id, e.props or {}, e.ts_ms, ctx, received_ms, live, out)
        self.advance(pid, max(e.ts_ms for e in events), live, ctx, received_ms, out)
        return out

    def _unpend(self, e: Event, live: LiveJourneys) -> None:
        """Activity after a deferred entry's trigger, of a kind its quiet conditions read:
        the entry is dropped (the customer came back before the silence was long enough)."""
        pending = self.pending or {}
        for jid, (_, _, ts) in list(pending.items()):
            lj = live.current.get(jid)
            conds = lj.journey.entry_if if lj is not None else ()
            if e.ts_ms > ts and any(
                isinstance(c, QuietCondition) and (not c.types or e.type in c.types) for c in conds
            ):
                del pending[jid]

    def _tz(self, live: LiveJourneys) -> str:
        return self.tz or live.default_tz

    def _date_fire(self, jid: str, trig: DateTrigger, live: LiveJourneys) -> int | None:
        """The next instant the date trigger fires for this profile (None: no date known)."""
        got = self.dates.get(trig.field)
        if got is None:
            return None
        value, learned = got
        after = max(learned, self.entries.get(jid, -1))
        return next_date_fire(value, trig.format, trig.offset_days, trig.at_min, self._tz(live), after)

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
        if e.type == trig.after and where_matches(trig.where, e):
            self.watches[jid] = (e.event_id, e.ts_ms, dict(e.props or {}))
        elif e.type == trig.missing:
            armed = self.watches.get(jid)
            if armed is not None and e.ts_ms >= armed[1]:
                del self.watches[jid]

    def advance(
        self,
        pid: str,
        now_ms: int,
        live: LiveJourneys,
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
        self,
        pid: str,
        now_ms: int,
        live: LiveJourneys,
        ctx: Context,
        received_ms: int,
        out: list[Intent | Event],
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
        pending = self.pending or {}
        for jid, (tid, props, ts) in list(pending.items()):
            lj = live.current.get(jid)
            if lj is None or lj.state == "disabled":
                del pending[jid]
                continue
            due = self._quiet_due(lj.journey.entry_if)
            if due <= now_ms and lj.state == "enabled":
                del pending[jid]
                self._enter(pid, lj.journey, tid, props, max(due, ts), ctx, received_ms, live, out)
        index = live.triggers
        for jid, lj, trig in index.inactivity:
            if self.last_event_ms >= 0 and lj.state == "enabled":
                at = self.last_event_ms + trig.for_ms
                if now_ms >= at and self.entries.get(f"{jid}#idle", -1) < self.last_event_ms:
                    self.entries[f"{jid}#idle"] = self.last_event_ms  # this silence is handled
                    self._enter(
                        pid, lj.journey, f"inactive:{self.last_event_ms}", {}, at, ctx, received_ms, live, out
                    )
        for jid, lj, dtrig in index.date:
            if lj.state == "enabled":
                f = self._date_fire(jid, dtrig, live)
                if f is not None and f <= now_ms:
                    trigger_id = f"date:{dtrig.field}:{f}"
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
        received_ms: int, live: LiveJourneys, out: list[Intent | Event],
    ) -> None:  # fmt: skip
        last = self.entries.get(j.id)
        if last is not None:
            if j.entry == "once":
                return
            if j.entry == "once_per" and ts - last < j.entry_days * DAY_MS:
                return
        if sum(1 for i in self.instances if i.journey_id == j.id) >= j.max_active:
            return
        if len(self.instances) >= MAX_INSTANCES:
            return
        if j.entry_if:
            waiting = False
            for c in j.entry_if:
                if not self._holds(c, ctx, props, ts):
                    if not isinstance(c, QuietCondition):
                        return  # refused
                    waiting = True
            if waiting:  # enters once the profile has been quiet long enough (see `advance`)
                if self.pending is None:
                    self.pending = {}
                self.pending[j.id] = (trigger_id, dict(props), ts)
                return
        self.entries[j.id] = ts
        if len(self.entries) > MAX_HISTORY:
            oldest = min(self.entries, key=self.entries.__getitem__)
            del self.entries[oldest]
        inst = Instance(j.id, j.version, 0, trigger_id, dict(props), ts, resume_ms=ts)
        self.instances.append(inst)

    # ------------------------------------------------------------------ running

    def _run(
        self, pid: str, inst: Instance, now_ms: int, live: LiveJourneys, ctx: Context, received_ms: int,
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
                until = wait_until(node, t, self._tz(live))
                if until > now_ms:
                    inst.resume_ms = until
                    inst.pc = ins.next
                    return True
                t = until
                inst.pc = ins.next
            elif ins.kind == "send":
                if j.quiet_hours is not None and not inst.deferred:
                    q = j.quiet_hours
                    quiet, ends = quiet_hours_decision(t, self._tz(live), q.start_min, q.end_min)
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
                detail: dict[str, Any] = {
                    "vars": render_vars(node.vars, pid, ctx, inst.trigger_props, self.attrs)
                }
                detail.update(_why(inst.trigger_props))
                out.append(self._intent("send", pid, j, inst, node, t, received_ms, detail))
                self.sent_by[node.template] = (j.id, j.version)
                if len(self.sent_by) > MAX_HISTORY:
                    del self.sent_by[next(iter(self.sent_by))]
                inst.pc = ins.next
            elif ins.kind == "branch":
                inst.pc = (
                    ins.targets[0]
                    if all(self._holds(c, ctx, inst.trigger_props, t) for c in node.when)
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
    named = e.props.get("channel") if e.props else None
    channel = named if isinstance(named, str) and named in CHANNELS else ""
    return Intent(
        "suppress", f"suppress:{e.event_id}", pid, "", 0, "", channel, e.type, "", 0, e.event_id, e.ts_ms,
        received_ms, {},
    )  # fmt: skip


CONSENTING = frozenset({"consent_granted", "consent_revoked"})


def _consent(pid: str, e: Event, received_ms: int) -> Intent:
    """A consent record from the stream: ``props.channel`` (a channel, or ``*`` for every
    channel) and ``props.version`` (the policy text agreed to). A grant must name its
    channel: one naming none or an unknown one grants nothing (``detail.unknown``). A
    refusal naming none or an unknown one refuses every channel, as a suppression does."""
    props = e.props or {}
    named = props.get("channel")
    version = props.get("version")
    detail: dict[str, Any] = {"version": "" if version is None else str(version)[:64]}
    channel = ""
    if isinstance(named, str) and named in CHANNELS:
        channel = named
    elif named != "*":
        detail["unknown"] = "" if named is None else str(named)[:64]
    return Intent(
        "consent", f"consent:{e.event_id}", pid, "", 0, "", channel, e.type, "", 0, e.event_id, e.ts_ms,
        received_ms, detail,
    )  # fmt: skip


def _agreed(pid: str, e: Event, agreed: Mapping[str, Any], received_ms: int) -> Intent:
    """The consent a profile record carries (``props.consent``: ``time``, ``ver`` or
    ``version``, ``channel`` default ``*``): a grant as of its time (the event's when it
    has none), as a ``consent_granted`` event would record it."""
    when = agreed.get("time")
    ts = (ts_or_none(when) if when is not None else None) or e.ts_ms  # unreadable: the record's time
    props = {"channel": agreed.get("channel", "*"), "version": agreed.get("ver", agreed.get("version"))}
    grant = Event(
        e.event_id, pid, "consent_granted", ts, e.source, props, {}, {}, e.received_ms, e.origin, 0, 0
    )
    return _consent(pid, grant, received_ms)


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


def _tag_event(pid: str, tag: str, add: bool, journey_id: str, ts: int, received_ms: int) -> Event:
    kind = "tag_added" if add else "tag_removed"
    props = {"tag": tag, "journey": journey_id}
    return engine_event(f"{kind}:{tag}:{pid}:{ts}:{journey_id}", pid, kind, ts, props, received_ms)
