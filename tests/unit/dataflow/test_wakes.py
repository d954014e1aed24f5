"""Deadlines in the worker's wake queue instead of a Bytewax timer per profile: what a
profile pushes, what a wake does early and on time, and when the wake input ends."""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from flows.core import metrics
from flows.core.contract import Event, RawRecord
from flows.core.messages import FeatureUpdate, Observation
from flows.core.settings import load_settings
from flows.core.streamtime import StreamClock
from flows.dataflow.build import FlowSinks, build_flow, feature_set
from flows.dataflow.profile import new_state
from flows.dataflow.profile_step import (
    DISCARD,
    RETAIN,
    ProfileConfig,
    ProfileLogic,
    model_inputs,
    rescore_silent,
)
from flows.dataflow.wake_input import InputEnds, WakeSource
from flows.dataflow.wakes import WAKE, SilentBook, Wake, WakeQueue
from flows.features.plan import FeaturePlan
from flows.features.rfm import RfmSketch
from scoring.observe import ScoringPlan, rescore_every
from tests.unit.scoring.serving import served_plan

PLAN = FeaturePlan(feature_set(load_settings(env={})))
T0 = 1_700_000_000_000


def test_the_queue_gives_each_due_key_once_in_deadline_order() -> None:
    q = WakeQueue()
    for at, key in [(5.0, "b"), (1.0, "a"), (3.0, "b"), (9.0, "c")]:
        q.push(at, key)
    assert q.due(0.5) == [] and q.next_at() == 1.0
    assert q.due(5.0) == ["a", "b"]  # "b" twice in the heap, once out
    assert len(q) == 1 and q.next_at() == 9.0


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 100), st.sampled_from("abcde")), max_size=60))
def test_a_deadline_comes_out_never_early_and_at_most_a_slot_late(ops) -> None:
    """Pushes and looks (True: push `key` at now + `x`; False: move now on by `x` and take
    what is due), against the deadlines kept in a plain list of 10 ms slots."""
    q, held, now = WakeQueue(), [], 0.0
    for push, x, key in ops:
        if push:
            q.push(now + x, key)
            held.append((now + x, key))
            continue
        now += x
        out = q.due(now)
        gone = [(at, k) for at, k in held if math.ceil(at * 100) <= math.floor(now * 100)]
        held = [e for e in held if e not in gone]
        assert sorted(out) == sorted({k for _, k in gone})  # each key once
        assert all(at <= now for at, _ in gone)  # never early
        assert all(at > now - 0.01 for at, _ in held)  # at most a slot late
        assert len(q) == len(held)  # the count kept as it goes
    assert len(q) == len(held)


def test_each_worker_thread_has_its_own_heap() -> None:
    q = WakeQueue()
    q.push(1.0, "here")
    seen: list[object] = []
    t = threading.Thread(target=lambda: seen.extend([len(q), q.due(10.0)]))
    t.start()
    t.join()
    assert seen == [0, []] and q.due(10.0) == ["here"]


def test_a_wake_crosses_workers_as_the_one_wake() -> None:
    assert pickle.loads(pickle.dumps(WAKE)) is WAKE


def test_the_silent_book_gives_each_holder_once_when_its_partitions_time_reaches_it() -> None:
    book = SilentBook()
    now = {0: 100, 1: 50}
    book.hold("a", 0, 90, "A")
    book.hold("b", 1, 60, "B")
    book.hold("c", 0, 95, "C")
    book.hold("c", 0, 150, "C")  # moved later: its old entry is skipped when it comes up
    book.hold("d", 0, 10, "D")
    book.forget("d")
    book.hold("e", 0, 20, "E")
    book.hold("e", 0, -1, "E")  # nothing due any more
    assert book.due(now.__getitem__) == ["A"] and len(book) == 2
    now[1] = 60
    assert book.due(now.__getitem__) == ["B"]
    now[0] = 200
    assert book.due(now.__getitem__) == ["C"] and len(book) == 0


class _Rising:
    """A served churn model whose risk is a tenth of the days since the last order."""

    def score(self, x: dict[str, float]) -> tuple[float, tuple[tuple[str, float], ...]]:
        return self.probability(x), ()

    def probability(self, x: dict[str, float]) -> float:
        return min(1.0, math.expm1(x.get("days_since_last_order", 0.0)) / 10)


class _Flat:
    """A served churn model whose risk time never moves."""

    def score(self, x: dict[str, float]) -> tuple[float, tuple[tuple[str, float], ...]]:
        return 0.3, ()

    def probability(self, x: dict[str, float]) -> float:
        return 0.3


def _booked(plan: ScoringPlan, wall: Wall) -> tuple[ProfileLogic, ProfileConfig]:
    """A scored profile after one order at T0, held in its own silent book."""
    cfg = ProfileConfig(
        features=PLAN, sketch=RfmSketch(), ttl_ms=86_400_000, max_ids=100, lateness_ms=60_000,
        refresh_s=60.0, idle_s=600.0, snapshot_ms=300_000, stream=StreamClock(0, wall), clock=wall,
        recovery=True, wakes=WakeQueue(), scoring=plan, score_bits=model_inputs(PLAN, plan),
        silent=SilentBook(),
    )  # fmt: skip
    logic = ProfileLogic(
        new_state(PLAN, cfg.ttl_ms, cfg.max_ids, cfg.lateness_ms, True, sketch=cfg.sketch), cfg, False
    )
    logic.on_batch([order(T0)])
    return logic, cfg


def test_the_book_rescores_a_silent_profile_at_its_due_times_and_wakes_it_to_cross() -> None:
    plan, models = served_plan(_Rising())
    wall = Wall()
    logic, cfg = _booked(plan, wall)
    book = cfg.silent
    assert len(book) == 1
    day = 86_400_000
    wall.t += 5 * 86_400
    cfg.stream.observe(T0 + 5 * day, 0)  # others' events move stream time on five days
    outs, woken = rescore_silent(book, cfg.stream)
    scores = [x for o in outs for x in o.scores]
    churn = models.by_name("churn")
    due = [T0]
    while (nxt := due[-1] + rescore_every(churn, due[-1] - T0)) <= T0 + 5 * day:
        due.append(nxt)
    assert woken == [] and [x.as_of_ms for x in scores] == due[1:]  # each as of when it fell due
    assert [x.score for x in scores] == sorted(x.score for x in scores) and scores[-1].score < 0.7
    wall.t += 4 * 86_400
    cfg.stream.observe(T0 + 9 * day, 0)  # past 0.7: the crossing is the profile's own to make
    outs, woken = rescore_silent(book, cfg.stream)
    while (nxt := due[-1] + rescore_every(churn, due[-1] - T0)) <= T0 + 9 * day:
        due.append(nxt)
    at = next(t for t in due if (t - T0) / day / 10 >= 0.7)  # the first due time past 0.7
    assert woken == [("p1", Wake.rescore(at))] and len(book) == 0
    assert [x.as_of_ms for o in outs for x in o.scores] == [t for t in due if T0 + 5 * day < t < at]
    out, _ = logic.on_batch([woken[0][1]])
    crossed = [e for o in out for e in o.events if e.type == "score_crossed"]
    # as of the time it fell due, not of the stream time the wake came at
    assert [(e.props["direction"], e.ts_ms) for e in crossed] == [("up", at)] and len(book) == 1
    # the book is derived state: a resume refills it as the profile is rebuilt
    again = dataclasses.replace(cfg, silent=SilentBook())
    restored = pickle.loads(logic.snapshot() or b"")
    restored.bind(PLAN, cfg.sketch)
    ProfileLogic(restored, again, True)
    assert len(again.silent) == 1


def test_a_rescoring_time_moved_less_than_a_step_is_counted_and_learned_not_written() -> None:
    plan, models = served_plan(_Flat())
    wall = Wall()
    _, cfg = _booked(plan, wall)
    unwritten = {"model": "churn"}
    before = REGISTRY.get_sample_value("scrm_rescorings_unwritten_total", unwritten) or 0.0
    wall.t += 5 * 86_400
    cfg.stream.observe(T0 + 5 * 86_400_000, 0)
    outs, woken = rescore_silent(cfg.silent, cfg.stream)
    churn = models.by_name("churn")
    due = [T0]
    while (nxt := due[-1] + rescore_every(churn, due[-1] - T0)) <= T0 + 5 * 86_400_000:
        due.append(nxt)
    assert woken == [] and [x for o in outs for x in o.scores] == []
    learned = [x.ts_ms for o in outs for x in o.learner_items if isinstance(x, Observation)]
    assert learned and all(b - a >= churn.observe_every_ms for a, b in itertools.pairwise(learned))
    after = REGISTRY.get_sample_value("scrm_rescorings_unwritten_total", unwritten)
    assert after == before + len(due) - 1 and len(cfg.silent) == 1  # held on


def test_a_rescore_wake_crosses_workers_with_its_time() -> None:
    again = pickle.loads(pickle.dumps(Wake.rescore(T0)))
    assert again == Wake.rescore(T0) and again.forced and not WAKE.forced and again != WAKE


class Wall:
    def __init__(self) -> None:
        self.t = T0 / 1000

    def __call__(self) -> float:
        return self.t


def _logic(wall: Wall, queue: WakeQueue, restored_from: bytes | None = None) -> ProfileLogic:
    cfg = ProfileConfig(
        features=PLAN, sketch=RfmSketch(), ttl_ms=86_400_000, max_ids=100, lateness_ms=60_000,
        refresh_s=60.0, idle_s=600.0, snapshot_ms=300_000, stream=StreamClock(0, wall), clock=wall,
        recovery=True, wakes=queue,
    )  # fmt: skip
    if restored_from is not None:
        st = pickle.loads(restored_from)
        st.bind(cfg.features, cfg.sketch)
        return ProfileLogic(st, cfg, True)
    return ProfileLogic(
        new_state(PLAN, cfg.ttl_ms, cfg.max_ids, cfg.lateness_ms, sketch=cfg.sketch), cfg, False
    )


def order(ts: int) -> Event:
    return Event(f"o{ts}", "p1", "order_paid", ts, "app", {"amount": 10.0}, {}, {}, ts, "t", 0, 0)


def test_a_profile_keeps_its_deadline_in_the_queue_not_in_a_bytewax_timer() -> None:
    wall, q = Wall(), WakeQueue()
    logic = _logic(wall, q)
    logic.on_batch([order(T0)])
    assert logic.notify_at() is None  # no Bytewax timer
    assert len(q) == 1 and q.next_at() == wall.t + 60.0  # the windows' refresh, a minute on
    # more events move the deadline later: the entry stays, nothing is pushed per event
    for s in range(1, 30):
        wall.t += 1
        logic.on_batch([order(T0 + s * 1000)])
    assert len(q) == 1


def test_an_early_wake_pushes_the_moved_deadline_and_a_due_one_moves_the_windows() -> None:
    wall, q = Wall(), WakeQueue()
    logic = _logic(wall, q)
    logic.on_batch([order(T0)])
    wall.t += 30
    logic.on_batch([order(T0 + 30_000)])  # the deadline is now T0 + 90 s; the entry still at 60
    wall.t += 31
    assert q.due(wall.t) == ["p1"]
    out, keep = logic.on_batch([WAKE])
    assert (out, keep) == ([], RETAIN) and q.next_at() == T0 / 1000 + 90  # early: pushed again
    wall.t += 8 * 86_400  # a silent week and more: the 7-day windows empty
    assert q.due(wall.t) == ["p1"]
    out, keep = logic.on_batch([WAKE])
    updates = [u for o in out for u in o.updates if isinstance(u, FeatureUpdate)]
    assert keep == RETAIN and len(updates) == 1 and updates[0].as_of_ms > T0 + 7 * 86_400_000


def test_events_and_a_wake_in_one_batch_run_the_events_first() -> None:
    wall, q = Wall(), WakeQueue()
    logic = _logic(wall, q)
    logic.on_batch([order(T0)])
    wall.t += 120
    assert q.due(wall.t) == ["p1"]
    out, _ = logic.on_batch([WAKE, order(T0 + 120_000)])
    assert [e.event_id for o in out for e in o.events if e.type == "order_paid"] == [f"o{T0 + 120_000}"]
    # as a timer checked after the batch: the event moved the deadline on, so no wake ran
    assert [u for o in out for u in o.updates if u.as_of_ms != T0 + 120_000] == []
    assert q.next_at() == wall.t + 60.0


def test_a_wall_clock_stepping_back_loses_no_deadline() -> None:
    wall, q = Wall(), WakeQueue()
    logic = _logic(wall, q)
    logic.on_batch([order(T0)])
    wall.t += 61
    assert q.due(wall.t) == ["p1"]
    wall.t -= 5  # an NTP step between the pop and the wake: the deadline is not due yet
    assert logic.on_batch([WAKE]) == ([], RETAIN)
    assert q.next_at() == T0 / 1000 + 60  # back in the queue


def test_the_wake_of_a_profile_dropped_since_keeps_nothing() -> None:
    logic = _logic(Wall(), WakeQueue())
    assert logic.on_batch([WAKE]) == ([], DISCARD)


def test_a_restored_profile_puts_its_deadline_back_in_the_queue() -> None:
    wall, q = Wall(), WakeQueue()
    logic = _logic(wall, q)
    logic.on_batch([order(T0)])
    snap = logic.snapshot()
    assert snap is not None
    fresh = WakeQueue()  # a new process: the queue is derived state, rebuilt at the resume
    _logic(wall, fresh, snap)
    assert fresh.due(wall.t + 61) == ["p1"]


def test_the_wake_input_sends_due_profiles_a_wake_and_counts_what_it_holds() -> None:
    q = WakeQueue()
    for at, key in [(1.0, "a"), (2.0, "b"), (50.0, "c")]:
        q.push(at, key)
    part = WakeSource(q, InputEnds(grace_s=60), clock=lambda: 10.0).build("wakes", 3, 4)
    assert part.next_batch() == [("a", WAKE), ("b", WAKE)]
    assert metrics.value("scrm_wake_deadlines", {"worker": "3"}) == 1
    assert part.next_awake() is not None  # "c" is 40 s away: looked at again within a tick


def test_the_wake_input_ends_with_the_events_input_or_when_stopping() -> None:
    ends = InputEnds(grace_s=60)
    part = WakeSource(WakeQueue(), ends).build("wakes", 0, 1)
    assert part.next_batch() == []  # no partition built yet: within the grace
    ends.opened()
    ends.opened()
    ends.closed()
    assert not ends.ended()
    ends.closed()
    assert ends.ended()
    stop = [False]
    stopping = InputEnds(lambda: stop[0])
    stopping.opened()
    assert not stopping.ended()
    stop[0] = True
    assert stopping.ended()
    assert InputEnds(grace_s=0).ended()  # a process that reads no partition: ends, loudly
    stop[0] = False
    live = InputEnds(lambda: stop[0], grace_s=None)  # open-ended: the others' events still come
    assert not live.ended()
    stop[0] = True
    assert live.ended()


_DAY = 86_400_000


def _order(i: int, pid: str, ts: int) -> RawRecord:
    """An order of 5 by `pid` at `ts`, offset `i`."""
    body = f'{{"eventId":"e{i}","profileId":"{pid}","type":"order_paid","ts":{ts},"props":{{"amount":5}}}}'
    return RawRecord(body.encode(), "t", 0, i, None, ts)


def test_after_a_restart_a_silent_profile_is_woken_without_an_event(tmp_path) -> None:
    """Bytewax rebuilds every restored profile at the resume, and each puts its deadline
    back in the new process's queue: the silent one moves on with no event of its own."""
    day = _DAY
    t = (int(time.time() * 1000) // day - 10) * day

    def second_run() -> Iterator[RawRecord]:  # two days on, then a second and a half of others
        for i in range(1, 31):
            time.sleep(0.05)  # on the worker's thread: the input is looked at again each time
            yield _order(i, "other", t + 2 * day + i * 1000)

    settings = load_settings(
        env={"SCRM_RECOVERY__DIR": str(tmp_path), "SCRM_FEATURES__IDLE_REFRESH_S": "0.2"}
    )
    init_db_dir(tmp_path, 1)
    runs: list[list[FeatureUpdate]] = []
    for _ in range(2):  # the first run ends at the EOF, snapshotted; the second resumes after it
        items = itertools.chain([_order(0, "silent", t), TestingSource.EOF()], second_run())
        updates: list[FeatureUpdate] = []
        flow = build_flow(settings, TestingSource(items), FlowSinks(features=[TestingSink(updates)]))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
        runs.append(updates)
    assert {u.as_of_ms for u in runs[0] if u.profile_id == "silent"} == {t}
    woken = [u.as_of_ms for u in runs[1] if u.profile_id == "silent"]
    assert woken and woken[0] > t + 2 * day  # its windows, as of the stream's time at the wake


def test_with_two_workers_every_silent_profile_is_woken() -> None:
    """Bytewax's worker threads are not Python's: each worker's deadlines must outlive the
    call that pushed them (a thread-local would not)."""
    day = _DAY
    t = (int(time.time() * 1000) // day - 10) * day

    def items() -> Iterator[RawRecord]:
        yield from (_order(100 + k, f"silent{k}", t) for k in range(8))
        for i in range(1, 31):  # others move stream time on for a second and a half
            time.sleep(0.05)
            yield _order(i, f"other{i % 4}", t + 2 * day + i * 1000)

    settings = load_settings(env={"SCRM_FEATURES__IDLE_REFRESH_S": "0.2"})
    updates: list[FeatureUpdate] = []
    flow = build_flow(settings, TestingSource(items()), FlowSinks(features=[TestingSink(updates)]))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    woken = {u.profile_id for u in updates if u.profile_id.startswith("silent") and u.as_of_ms > t}
    assert woken == {f"silent{k}" for k in range(8)}
