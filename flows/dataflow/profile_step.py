"""The per-profile step's logic, and the batch parser: the work between Bytewax's operators.

`ProfileLogic` is the logic of one profile's Bytewax state (`ProfileState` plus its
timers), `ParseBatch` validates an input batch. `flows.dataflow.stages` wires them into
the dataflow (a `StatefulBatchLogic` there hands each call to a `ProfileLogic`); nothing
here is a Bytewax class or operator, so it can be compiled (`flows/core/compiled.py`).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, Protocol

from flows.core import metrics
from flows.core.contract import ENGINE, DeadLetter, Event, RawRecord, Validator
from flows.core.messages import Activity, FeatureUpdate, Intent, LearnerItem, Observation, Outcome, Score
from flows.core.streamtime import Clock, StreamClock
from flows.core.wire import from_wire
from flows.dataflow.profile import ProfileState
from flows.dataflow.wakes import SilentBook, Wake, WakeQueue
from flows.features.plan import FeaturePlan
from flows.features.rfm import RfmSketch
from rules.evaluate import Context
from rules.live import LiveJourneys
from scoring.observe import ScoringPlan

log = logging.getLogger("scrm.persons")


class Parsed(NamedTuple):
    """One input batch validated: accepted events and dead letters."""

    events: list[Event]
    dead_letters: list[DeadLetter]


class ParseBatch:
    """Validates a batch against the contract with one clock reading; counts the outcome."""

    def __init__(self, validator: Validator, clock: Clock) -> None:
        self._validator = validator
        self._clock = clock
        self._accepted = metrics.EVENTS_ACCEPTED
        self._lag = metrics.EVENT_TIME_LAG
        self._newest = metrics.EVENT_TIME

    def __call__(self, batch: list[RawRecord]) -> list[Parsed]:
        now = self._clock()
        now_ms = int(now * 1000)
        parse = self._validator.parse
        events: list[Event] = []
        dead: list[DeadLetter] = []
        newest = 0
        for rec in batch:
            item = parse(rec, now_ms)
            if isinstance(item, Event):
                events.append(item)
                if item.ts_ms > newest:
                    newest = item.ts_ms
            else:
                dead.append(item)
                metrics.EVENTS_REJECTED.labels(reason=item.reason).inc()
        invalid = self._validator.invalid_identifiers
        if invalid:
            for (kind, reason), n in invalid.items():
                metrics.IDENTIFIERS_INVALID.labels(kind=kind, reason=reason).inc(n)
            invalid.clear()
        if events:
            self._accepted.inc(len(events))
            self._lag.set(max(0.0, now - newest / 1000))
            self._newest.set(newest / 1000)
        return [Parsed(events, dead)]


class ProfileOut(NamedTuple):
    """What the per-profile step emits for one batch or timer, by kind (each becomes its
    own typed stream). A kind with nothing is the empty tuple, not a list of its own."""

    events: Sequence[Event]  # accepted (marked late or not) and the engine's own
    updates: Sequence[FeatureUpdate]
    scores: Sequence[Score]
    learner_items: Sequence[LearnerItem]
    intents: Sequence[Intent]


# Bytewax's StatefulBatchLogic.RETAIN / DISCARD: keep the state, or drop it.
RETAIN = False
DISCARD = True

# Notices from the persons step at a merge (never stored): the loser hands its state off
# (`sinks.handoffs`), the winner takes it in; both come before the record that merged them.
HANDOFF = "person_handoff"
ABSORB = "person_absorb"
POLL_S = 0.05  # how often a winner waiting for a hand-off looks again


def _notice(e: Event) -> bool:
    """Whether `e` is a hand-off notice of the persons step, not a record."""
    return (e.type == HANDOFF or e.type == ABSORB) and e.origin == ENGINE


NO_SNAPSHOT = 1 << 62  # a snapshot interval never reached: time alone writes no snapshot row

# Which `ProfileOut` list each kind of item the profile state emits goes to.
_SLOT = {Event: 0, FeatureUpdate: 1, Score: 2, Observation: 3, Activity: 3, Outcome: 3, Intent: 4}


def _route(items: list[Any]) -> list[ProfileOut]:
    """The profile state's outputs, in order, sorted into their streams (one pass)."""
    if not items:
        return []
    parts: list[Any] = [(), (), (), (), ()]
    slot = _SLOT
    for x in items:
        i = slot[type(x)]
        part = parts[i]
        if part:
            part.append(x)
        else:
            parts[i] = [x]
    # tuple.__new__: the class's own __new__ is an interpreted function
    return [tuple.__new__(ProfileOut, parts)]


class ProfileLogic:
    """One profile: dedupe, features, and a wall-clock deadline that refreshes a silent
    profile's windows as of stream time (see `flows.core.streamtime`).

    With features on, the deadline runs while a windowed feature still holds data; with
    them off, it drops the (dedupe-only) state after ``dedupe.idle_evict_s``. It is
    recomputed at most every tenth of the interval, so it costs next to nothing per event.
    Deadlines wait in the worker's `WakeQueue` and come back as a `WAKE` through
    ``on_batch``; a Bytewax timer is held only while waiting for a hand-off.
    """

    def __init__(self, state: ProfileState, cfg: ProfileConfig, restored: bool) -> None:
        self._state = state
        self._cfg = cfg
        self._wait_since = 0.0  # when a wait for a hand-off began (wall clock; 0: not yet timed)
        self._handed_off = False
        # the running journeys as last written to the feature store ("" none; None: not
        # since a restore, so written again at the first change or call)
        self._journeys: str | None = None if restored else ""
        self._deadline_at = 0.0
        self._deadline: datetime | None = None
        self._due = (-1, 0.0)  # (the next event-time deadline, when it is expected in wall time)
        self._queued = 0.0  # the earliest deadline this profile has in the wake queue (0: none)
        if restored:  # a new profile is scheduled after its first batch
            self._schedule()

    def _schedule(self) -> None:
        cfg = self._cfg
        st = self._state
        interval = cfg.refresh_s if cfg.features else cfg.idle_s
        now = cfg.clock()
        if st.waiting is not None:  # for a hand-off: look again soon (few keys wait at once)
            self._deadline_at = now + POLL_S
            self._deadline = datetime.fromtimestamp(self._deadline_at, UTC)
            return
        self._deadline = None
        if cfg.features and not st.live(st.as_of(cfg.stream.now_ms(st.partition))):
            self._deadline_at = 0.0
        elif now + interval - self._deadline_at > interval / 10:
            self._deadline_at = now + interval
        # A silent profile's rescorings are the silent book's (also once its windows are
        # empty), not a wake's.
        sc = st.scoring
        if cfg.scoring is not None and sc is not None and sc.last_score and st.profile_id:
            rescore = -1 if self._handed_off else sc.next_rescore(cfg.scoring)
            cfg.silent.hold(st.profile_id, st.partition, rescore, self)
        # A journey's event-time deadline (a wait, an absence window), turned into
        # wall-clock time only when it changes.
        due = -1
        js = st.journeys
        live = cfg.journeys
        if live is not None and js is not None and (js.instances or js.watches or js.last_event_ms >= 0):
            due = js.next_due(live)
        if due >= 0:
            if due != self._due[0]:
                self._due = (due, max(cfg.stream.wall_of(due, st.partition), now + 0.01))
            at = self._due[1]
            if not self._deadline_at or at < self._deadline_at:
                self._deadline_at = at
        self._enqueue()

    def _enqueue(self) -> None:
        """The worker's wake queue holds the deadline, not a Bytewax timer; an entry already
        there that falls due sooner stays, and its early wake pushes this one."""
        at = self._deadline_at
        st = self._state
        # (while waiting for a hand-off the deadline is a Bytewax timer's)
        if at and (not self._queued or at < self._queued) and st.profile_id and st.waiting is None:
            self._cfg.wakes.push(at, st.profile_id)
            self._queued = at

    def on_batch(self, values: list[Any]) -> tuple[list[ProfileOut], bool]:
        events: list[Event] = [from_wire(v) for v in values if type(v) is not Wake]
        if len(events) == len(values):
            out, keep = self._batch(events)
            return self._routed(out), keep
        # A wake from the queue (`flows.dataflow.wakes`): the events first, then what fell
        # due, as a timer firing after this batch would have.
        now = self._cfg.clock()
        # Its entry has left the queue (or a stale later one has, after it): either way the
        # deadline goes back in below unless it is due now. Clearing on the wall clock
        # instead would lose it for good if the clock stepped back.
        self._queued = 0.0
        st = self._state
        if events:
            out, keep = self._batch(events)
        elif not st.profile_id and st.waiting is None:
            return [], DISCARD  # the wake of a profile dropped since: nothing to keep
        else:
            out, keep = [], RETAIN
        at = -1  # a rescoring that would cross a threshold: wake as of its due time
        for v in values:
            if type(v) is Wake and v.at > at:
                at = v.at
        if keep == RETAIN and st.waiting is None and (0 < self._deadline_at <= now or at >= 0):
            more, keep = self._wake(at)
            out.extend(more)
        elif not events:  # early (its deadline moved later): back in the queue as it is
            self._enqueue()
        return self._routed(out), keep

    def _batch(self, values: list[Event]) -> tuple[list[Any], bool]:
        # Stream time moves where events reach their profiles (see `flows.core.streamtime`).
        last = values[-1]
        self._cfg.stream.observe(
            max(e.ts_ms for e in values) if len(values) > 1 else last.ts_ms, last.partition
        )
        if self._cfg.handoffs is not None:  # routing by person: merges hand state over
            out: list[Any] = []
            waiting = self._state.waiting
            if waiting is None:
                keep = self._run(values, out)
            else:
                after = self._wait([*waiting, *values])
                keep = self._look_again(out, False) if after is None else self._run(after, out)
            self._schedule()
            return out, keep
        emitted = self._events(values)
        self._schedule()
        return emitted, RETAIN

    def _routed(self, out: list[Any]) -> list[ProfileOut]:
        """`_route`, with the running journeys when they changed (on the call's feature
        update, or on one of their own at the features' last time)."""
        st = self._state
        js = st.journeys
        if (
            js is not None
            and self._cfg.journeys is not None
            and st.last_as_of >= 0
            and (js.instances or self._journeys != "")
        ):
            now = js.running()
            if now != self._journeys:
                self._journeys = now
                for k in range(len(out) - 1, -1, -1):
                    u = out[k]
                    if type(u) is FeatureUpdate:
                        out[k] = u._replace(journeys=now)
                        break
                else:
                    out.append(FeatureUpdate(st.profile_id, st.last_as_of, {}, (), None, 0, journeys=now))
        return _route(out)

    # ------------------------------------------------------------------ merges

    def _run(self, values: list[Event], out: list[Any]) -> bool:
        """`values` in order, a hand-off notice where it falls; stops at a winner's notice
        whose hand-off is not there yet and holds it and the rest until it is (so the
        merged state meets every record after the merge, as one person's would). What a
        loser held when it was merged comes with its state and runs right after it.
        Returns DISCARD once the state is handed off and nothing came after."""
        queue = values
        start = i = 0
        while i < len(queue):
            e = queue[i]
            kind = e.type
            if not _notice(e):
                i += 1
                continue
            if i > start:
                out.extend(self._events(queue[start:i]))
            if kind == HANDOFF:
                self._hand_off(e)
            else:
                held = self._absorb(e)
                if held is not None:  # taken in: what the loser held runs next
                    queue = [*held, *queue[i + 1 :]]
                else:  # not there yet: hold from here (handing off at once when merged too)
                    after = self._wait(queue[i:])
                    if after is None:
                        return RETAIN
                    queue = after
                start = i = 0
                continue
            i += 1
            start = i
        if start < len(queue):
            out.extend(self._events(queue[start:] if start else queue))
        st = self._state
        if (
            self._handed_off
            and st.waiting is None
            and not st.running()
            and not (st.features and st.features.held)
        ):
            return DISCARD  # handed off, nothing left to run, no record since: nothing to keep
        return RETAIN

    def _wait(self, held: list[Event]) -> list[Event] | None:
        """Hold `held` (a winner's notice whose hand-off is not there, and what came after
        it) until it is; but a hand-off notice of this key among them is done at once, the
        records before it going with the state. What came after that notice, or None
        while waiting."""
        for k, x in enumerate(held):
            if _notice(x) and x.type == HANDOFF:
                self._state.waiting = held[:k]
                self._hand_off(x)  # takes `waiting` with the state
                self._wait_since = 0.0
                return held[k + 1 :]
        self._state.waiting = list(held)
        if not self._wait_since:
            self._wait_since = self._cfg.clock()
        return None

    def _hand_off(self, notice: Event) -> None:
        """The loser's side: what its events determine to Redis under the merge id
        (`ProfileState.hand_off`); its running journeys stay."""
        cfg = self._cfg
        st = self._state
        # nothing to hand off: a key that never had a record and holds none
        payload = pickle.dumps(st.hand_off(), protocol=5) if st.profile_id or st.waiting else b""
        assert cfg.handoffs is not None
        cfg.handoffs.put(str(notice.props["mergeId"]), payload)
        metrics.HANDOFFS.labels(step="handed_off").inc()
        self._handed_off = True

    def _absorb(self, notice: Event) -> list[Event] | None:
        """The winner's side: take in the loser's hand-off; None while it is not there,
        else what the loser held (a merge it was waiting for, and its records after it)."""
        cfg = self._cfg
        assert cfg.handoffs is not None
        payload = cfg.handoffs.get(str(notice.props["mergeId"]))
        if payload is None:
            return None
        st = self._state
        held: list[Event] = []
        if payload:
            other: ProfileState = pickle.loads(payload)
            other.bind(cfg.features, cfg.sketch)
            st.absorb(other)
            held = other.waiting or []
        if not st.profile_id:
            st.profile_id = notice.person_id
            st.partition = notice.partition
        metrics.HANDOFFS.labels(step="absorbed").inc()
        return held

    def _look_again(self, out: list[Any], block: bool) -> bool:
        """A waiting winner: its hand-off, then the records held behind it. Without it
        after ``handoff_wait_s``, it goes on with its own state, loudly."""
        cfg = self._cfg
        st = self._state
        waiting = st.waiting
        assert waiting is not None
        if not self._wait_since:
            self._wait_since = cfg.clock()
        got = self._absorb(waiting[0])
        while got is None:
            if cfg.clock() - self._wait_since >= cfg.handoff_wait_s:
                p = waiting[0].props
                log.error(
                    "person %s: no hand-off of merge %s from %s after %.0f s; going on without that state",
                    waiting[0].person_id, p.get("mergeId"), p.get("other"), cfg.handoff_wait_s,
                )  # fmt: skip
                metrics.HANDOFFS.labels(step="missing").inc()
                got = []
            elif not block:
                return RETAIN
            else:
                time.sleep(POLL_S)
                got = self._absorb(waiting[0])
        st.waiting = None
        self._wait_since = 0.0
        return self._run([*got, *waiting[1:]], out)

    # ------------------------------------------------------------------ events

    def _events(self, values: list[Event]) -> list[Any]:
        """Due steps and folds for some of the profile's records, in order."""
        if not self._cfg.features or len(values) == 1:
            last = values[-1]
            emitted: list[Any] = []
            self._fire_due(last.ts_ms, last.received_ms, emitted)
            emitted.extend(self._fold(values))
        else:
            # Each event is folded on its own, after what fell due before it: every
            # decision sees the profile exactly as it was at its moment (a journey entered
            # or a branch taken at an event sees that event and none after it; a step due
            # between two events sees the first and not the second), and a tag or segment
            # change is stamped with the event that caused it. So how events happen to be
            # batched — live, in a replay, in a catch-up after a restart — changes no
            # decision and no engine event (their ids carry that time).
            emitted = []
            for e in values:
                self._fire_due(e.ts_ms, e.received_ms, emitted)
                emitted.extend(self._fold([e]))
        return emitted

    def _fire_due(self, until_ms: int, received_ms: int, out: list[Any]) -> None:
        """Fire the journey steps due by event time `until_ms`, earliest first, each with
        the profile as its events left it and its features as of the step's due time."""
        st, live = self._state, self._cfg.journeys
        js = st.journeys
        if live is None or js is None or not st.profile_id:
            return
        due = js.next_due(live)
        if 0 <= due <= until_ms:
            fired = len(out)
            js.advance(st.profile_id, until_ms, live, lambda t: _context(st, st.as_of(t)), received_ms, out)
            # The steps' own events (a tag node's) start journeys here, on either path: a wake
            # or the next event, whichever gets to the due steps first.
            made = [x for x in out[fired:] if type(x) is Event]
            if made:
                ctx = _context(st, st.as_of(until_ms))
                out.extend(js.on_events(st.profile_id, made, live, ctx, received_ms))

    def _fold(self, values: list[Event]) -> list[Any]:
        """Dedupe, features, scores and journeys for some of the profile's events, in order.

        Everything here is as of the profile's own newest event, not stream time: stream
        time depends on how the partition happened to be batched (and may already be past
        the profile's next events, still in this batch), so reading it here would make the
        features, the change events' times and the decisions depend on batching."""
        st = self._state
        own_newest = max(e.ts_ms for e in values)
        out, dups, late = st.ingest(values)
        if dups:
            metrics.EVENTS_DUPLICATE.inc(dups)
        if late:
            metrics.EVENTS_LATE.inc(late)
        emitted: list[Any] = list(out)
        cfg = self._cfg
        if not out or not cfg.features:  # journeys and scoring run only with features on
            return emitted
        as_of = st.as_of(own_newest)
        newest = max(e.received_ms for e in out)
        reads = _Reads(st, as_of)  # each read at most once, for all that read it
        if len(out) > late:
            upd = st.update(st.profile_id, as_of, cfg.snapshot_ms, newest, reads.full)
            if upd is not None:
                emitted.append(upd)
                if upd.tags is not None or upd.segment is not None:
                    emitted.extend(st.change_events(upd))
            if cfg.scoring is not None and st.scoring is not None:
                emitted.extend(
                    st.scoring.on_events(
                        cfg.scoring, st.profile_id, out, as_of, partial(reads.some, cfg.score_bits), newest
                    )
                )
        if cfg.journeys is not None and st.journeys is not None:
            engine = [x for x in emitted if type(x) is Event and x.origin == ENGINE]
            ctx = _context(st, as_of, reads)
            js = st.journeys.on_events(st.profile_id, out + engine, cfg.journeys, ctx, newest)
            emitted.extend(js)
        return emitted

    def on_notify(self) -> tuple[list[ProfileOut], bool]:
        """A Bytewax timer: held only while waiting for a hand-off (see `_schedule`)."""
        out, keep = self._wake()
        return self._routed(out), keep

    def _wake(self, at: int = -1) -> tuple[list[Any], bool]:
        """A deadline passed: a hand-off looked for again, or the profile moved to stream
        time (windows, journey steps due, a silent rescoring); with `at`, to that event
        time instead (a silent rescoring due then crosses a threshold; never back before
        a time the profile has already been brought to)."""
        cfg = self._cfg
        st = self._state
        _WAKES.inc()
        if st.waiting is not None:
            held: list[Any] = []
            keep = self._look_again(held, False)
            self._deadline_at = 0.0
            self._schedule()
            return held, keep
        if not cfg.features:
            return [], DISCARD
        as_of = st.as_of(at if at >= 0 else cfg.stream.now_ms(st.partition))
        if at >= 0 and as_of < st.last_as_of:
            as_of = st.last_as_of
        out: list[Any] = []
        # What fell due since the last event first, exactly as the next event would have
        # fired it (see on_batch); then the windows move to stream time.
        self._fire_due(as_of, 0, out)
        fired = len(out)  # its events have been through the journeys' triggers
        reads = _Reads(st, as_of)  # each read at most once, for all that read it
        # Windows that held data move; once empty (and updated so), only time moves: no
        # feature update, only a rescore when due. Time alone writes no snapshot row (the
        # store has the drifting values); a segment change still does.
        moved = st.profile_id and (st.live(as_of) or st.live(st.last_as_of))
        upd = st.update(st.profile_id, as_of, NO_SNAPSHOT, 0, reads.full) if moved else None
        if upd is not None:
            out.extend([upd, *st.change_events(upd)])
        if cfg.scoring is not None and st.scoring is not None and st.profile_id:
            delays: list[tuple[str, int]] = []
            out.extend(
                st.scoring.on_refresh(
                    cfg.scoring, st.profile_id, as_of, partial(reads.some, cfg.score_bits), False, delays
                )
            )
            for model, late_ms in delays:
                _per_model(metrics.RESCORE_DELAY, model).observe(late_ms / 1000)
        if cfg.journeys is not None and st.journeys is not None and st.profile_id:
            engine = [x for x in out[fired:] if type(x) is Event]
            ctx = _context(st, as_of, reads)
            if engine:
                out.extend(st.journeys.on_events(st.profile_id, engine, cfg.journeys, ctx, 0))
            else:
                st.journeys.advance(st.profile_id, as_of, cfg.journeys, ctx, 0, out)
        self._deadline_at = 0.0  # this wake's deadline has passed: the next one from scratch
        self._due = (-1, 0.0)
        self._schedule()
        return out, RETAIN

    @property
    def key(self) -> str:
        return self._state.profile_id

    def silent(self, out: list[Any], until: int = -1) -> int:
        """The silent book's rescorings of this profile, each as of the event time it fell
        due, up to stream time, without a wake (`ProfileScoring.on_silence`): a replay
        rescores a silent profile when a live run would have (`until`: up to that time, not
        its partition's). -1, or the due time of a rescoring whose score would cross a
        threshold: the profile then wakes as of it (`Wake.rescore`), so its journeys see
        the crossing."""
        cfg = self._cfg
        st = self._state
        sc = st.scoring
        plan = cfg.scoring
        if plan is None or sc is None or not st.profile_id or self._handed_off or st.waiting is not None:
            return -1
        now = until if until >= 0 else cfg.stream.now_ms(st.partition)
        pid = st.profile_id
        delays: list[tuple[str, int]] = []
        written: dict[str, int] = {}  # model -> scores written less rescorings made
        due = sc.next_rescore(plan)
        while 0 <= due <= now:
            as_of = st.as_of(due)  # (an event after `due` already folded: as of that event)
            reads = _Reads(st, as_of)
            done = sc.on_silence(plan, pid, as_of, partial(reads.some, cfg.score_bits), delays)
            if done is None:
                return due
            out.extend(done)
            for x in done:
                if type(x) is Score:
                    written[x.model] = written.get(x.model, 0) + 1
            nxt = sc.next_rescore(plan)
            if nxt <= due:  # nothing was due after all
                break
            due = nxt
        for model, late_ms in delays:
            _per_model(metrics.RESCORE_DELAY, model).observe(late_ms / 1000)
            written[model] = written.get(model, 0) - 1
        for model, n in written.items():
            if n < 0:
                _per_model(metrics.RESCORES_UNWRITTEN, model).inc(-n)
        cfg.silent.hold(pid, st.partition, due, self)
        return -1

    def on_eof(self) -> tuple[list[ProfileOut], bool]:
        """End of a bounded input (a replay): what is due by stream time happens now
        (absence windows that passed, waits that ended), since no timer will fire later,
        and every scored profile is rescored as of that time."""
        cfg = self._cfg
        out: list[Any] = []
        while self._state.waiting is not None:  # no timer fires after the end: wait here
            self._look_again(out, True)
        st = self._state
        # Every partition has been read to its end: the newest time of them all holds.
        as_of = st.as_of(cfg.stream.now_ms())
        scoring = cfg.scoring is not None and st.scoring is not None and bool(st.profile_id)
        if scoring and cfg.features is not None:
            # the silent rescorings due before the end, each as of its due time; one that
            # would cross a threshold as the profile's wake then, as the wake input would have
            last = -1
            while (at := self.silent(out, as_of)) > last:
                out.extend(self._wake(at)[0])
                last = at
        if cfg.journeys is not None and st.journeys is not None and st.profile_id:
            self._fire_due(as_of, 0, out)
        if cfg.scoring is not None and st.scoring is not None and st.profile_id:
            # every scored profile's latest score as of the end
            reads = _Reads(st, as_of)
            scored = st.scoring.on_refresh(
                cfg.scoring, st.profile_id, as_of, partial(reads.some, cfg.score_bits), True
            )
            out.extend(scored)
            engine = [x for x in scored if type(x) is Event]
            if engine and cfg.journeys is not None and st.journeys is not None:
                ctx = _context(st, as_of, reads)
                out.extend(st.journeys.on_events(st.profile_id, engine, cfg.journeys, ctx, 0))
        return self._routed(out), RETAIN

    def notify_at(self) -> datetime | None:
        return self._deadline

    def snapshot(self) -> bytes | None:
        # Bytewax asks for snapshots at every epoch even without recovery: then there is
        # nothing to save. With recovery, pickled bytes are the immutable copy (and far
        # cheaper than a deep copy).
        return pickle.dumps(self._state, protocol=5) if self._cfg.recovery else None


_WAKES = metrics.PROFILE_WAKES
# (metric, model) -> the metric's child for that model: a labels() lookup per call costs ~1 µs
_PER_MODEL: dict[tuple[Any, str], Any] = {}


def _per_model(metric: Any, model: str) -> Any:
    child = _PER_MODEL.get((metric, model))
    if child is None:
        child = _PER_MODEL[(metric, model)] = metric.labels(model=model)
    return child


@dataclass(frozen=True)
class ProfileConfig:
    features: FeaturePlan | None  # None: features off (dedupe only)
    sketch: RfmSketch  # the RFM quantiles of every profile in this process
    ttl_ms: int
    max_ids: int
    lateness_ms: int
    refresh_s: float
    idle_s: float
    snapshot_ms: int
    stream: StreamClock
    clock: Clock
    recovery: bool
    scoring: ScoringPlan | None = None
    journeys: LiveJourneys | None = None  # the live journeys (rules.store.JourneyCatalog or alike)
    score_bits: int = 0  # the features the models read, as plan bits
    handoffs: HandOffStore | None = None  # routing by person: where merged states travel
    handoff_wait_s: float = 30.0
    wakes: WakeQueue = field(default_factory=WakeQueue)  # the workers' deadlines (`flows.dataflow.wakes`)
    silent: SilentBook = field(default_factory=SilentBook)  # silent rescorings, without a wake


class HandOffStore(Protocol):
    """Where a merged person's state goes to its winner (`sinks.handoffs.HandOffs`)."""

    def put(self, merge_id: str, payload: bytes) -> bool: ...

    def get(self, merge_id: str) -> bytes | None: ...


class _Lazy(Mapping[str, float]):
    """A mapping computed on first read (branch conditions rarely read features)."""

    def __init__(self, get: Callable[[], dict[str, float]]) -> None:
        self._get = get

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _context(st: ProfileState, as_of: int, reads: _Reads | None = None) -> Context:
    scores = st.scoring.values if st.scoring is not None else {}
    return Context(st.tags, st.segment, _Lazy((reads or _Reads(st, as_of)).full), scores)


class _Reads:
    """A profile's features as of one time, each read at most once and shared by all that
    read them: the full map (a snapshot, a branch condition) or, when nothing needed that,
    only the models' inputs (a rescoring reads a third of the features)."""

    __slots__ = ("_as_of", "_full", "_some", "_st")

    def __init__(self, st: ProfileState, as_of: int) -> None:
        self._st = st
        self._as_of = as_of
        self._full: dict[str, float] | None = None
        self._some: tuple[int, dict[str, float]] | None = None

    def full(self) -> dict[str, float]:
        if self._full is None:
            f = self._st.features
            self._full = f.values(self._as_of) if f is not None else {}
        return self._full

    def some(self, bits: int) -> Mapping[str, float]:
        """At least the features in `bits` (the full map when it is already read)."""
        f = self._st.features
        if self._full is not None or f is None:
            return self.full()
        if self._some is None or self._some[0] != bits:
            self._some = (bits, f.read(bits, self._as_of))
        return self._some[1]


def rescore_silent(book: SilentBook, stream: StreamClock) -> tuple[list[ProfileOut], list[tuple[str, Wake]]]:
    """The rescorings of this worker's silent profiles that stream time has reached (the
    wake input calls it at each poll): their outputs as one `ProfileOut`, and a wake as
    of its due time for each profile whose score would cross a threshold."""
    out: list[Any] = []
    woken: list[tuple[str, Wake]] = []
    for logic in book.due(stream.now_ms):
        at = logic.silent(out)
        if at >= 0:
            woken.append((logic.key, Wake.rescore(at)))
    return _route(out), woken


def model_inputs(plan: FeaturePlan | None, scoring: ScoringPlan | None) -> int:
    """The features the models' input vectors read (`scoring.vectors`), as plan bits."""
    if plan is None or scoring is None:
        return 0
    models = (*scoring.profile_models, *scoring.opp_models)
    return plan.bits([*(n for m in models for n in m.features), *filter(None, [scoring.first_seen])])
