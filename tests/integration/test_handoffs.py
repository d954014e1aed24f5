"""A merge hands the loser's state to the winner through the real Valkey
(`sinks.handoffs`), driven the way Bytewax drives the profile step: the winner may meet
its notice before the loser has handed off, and then holds its records until it has."""

from __future__ import annotations

import dataclasses
import pickle
import threading
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from flows.core.batches import Keyed, person_of
from flows.core.contract import ENGINE, Event
from flows.core.settings import load_settings
from flows.core.streamtime import StreamClock
from flows.dataflow.build import feature_set
from flows.dataflow.profile import new_state
from flows.dataflow.profile_step import (
    ABSORB,
    DISCARD,
    HANDOFF,
    RETAIN,
    ProfileConfig,
    ProfileLogic,
    ProfileOut,
)
from flows.dataflow.stages import _ProfileState
from flows.dataflow.wakes import WAKE
from flows.features.plan import FeaturePlan
from flows.features.rfm import RfmSketch
from rules.runtime import Instance
from sinks.handoffs import HandOffs
from sinks.retry import RetryPolicy

HOUR = 3_600_000
T0 = 1_790_000_000_000
PLAN = FeaturePlan(feature_set(load_settings(env={})))


def ev(eid: str, person: str, etype: str, ts: int, **props: object) -> Event:
    return Event(eid, person, etype, ts, "app", props, {}, {}, 0, "t", 0, 0, False, person)


def notice(kind: str, key: str, merge_id: str, other: str, ts: int) -> Event:
    props = {"mergeId": merge_id, "other": other}
    return Event(f"{kind}:{merge_id}", key, kind, ts, "app", props, {}, {}, 0, ENGINE, 0, 0, False, key)


class Wall:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def step(cfg: ProfileConfig) -> ProfileLogic:
    state = new_state(cfg.features, cfg.ttl_ms, cfg.max_ids, cfg.lateness_ms, sketch=cfg.sketch)
    return ProfileLogic(state, cfg, False)


def config(valkey: str, wall: Wall, wait_s: float = 30.0) -> ProfileConfig:
    return ProfileConfig(
        features=PLAN, sketch=RfmSketch(), ttl_ms=86_400_000, max_ids=1000, lateness_ms=HOUR,
        refresh_s=60.0, idle_s=600.0, snapshot_ms=300_000, stream=StreamClock(0, wall), clock=wall,
        recovery=True, handoffs=HandOffs(valkey, 2.0, RetryPolicy(attempts=2), 600), handoff_wait_s=wait_s,
    )  # fmt: skip


def orders(logic: ProfileLogic, at: int) -> tuple[float, float]:
    v = logic._state.features.values(at)  # type: ignore[union-attr]
    return v["orders_30d"], v["revenue_30d"]


def test_a_winner_holds_its_records_until_the_loser_hands_off(valkey) -> None:
    wall = Wall()
    cfg = config(valkey, wall)
    loser, winner = step(cfg), step(cfg)
    loser.on_batch([ev("a1", "L", "order_paid", T0, amount=30.0), ev("a2", "L", "page_view", T0 + 1)])
    winner.on_batch([ev("b1", "W", "order_paid", T0 + 2, amount=50.0)])
    # the winner meets the merge first: it holds the record after it, and the repeat of a1
    got, keep = winner.on_batch(
        [
            notice(ABSORB, "W", "m1", "L", T0 + 10),
            ev("b2", "W", "order_paid", T0 + 10, amount=20.0),
            ev("a1", "W", "order_paid", T0, amount=30.0),
        ]
    )
    assert keep == RETAIN and got == [] and winner._state.waiting is not None
    assert orders(winner, T0 + 10) == (1.0, 50.0)
    assert winner.notify_at() is not None  # it looks again soon
    held = pickle.loads(pickle.dumps(winner._state))  # a snapshot while waiting keeps the held records
    assert [e.event_id for e in held.waiting] == [f"{ABSORB}:m1", "b2", "a1"]
    got, keep = winner.on_notify()
    assert got == [] and winner._state.waiting is not None  # not handed off yet

    cfg.wakes.due(1e12)  # the loser's deadline falls due with the hand-off
    _, keep = loser.on_batch([WAKE, notice(HANDOFF, "L", "m1", "W", T0 + 10)])
    assert keep == DISCARD  # nothing left to run under the loser
    assert len(cfg.wakes) == 0  # and no deadline queued again for the state dropped
    got, keep = winner.on_notify()
    assert keep == RETAIN and winner._state.waiting is None
    # the loser's order and page view, the winner's two orders; a1 again is a repeat
    assert orders(winner, T0 + 10) == (3.0, 100.0)
    stored = [e.event_id for out in got for e in out.events if e.origin != ENGINE]
    assert stored == ["b2"]  # and the engine's own: tags, segment as the merged profile reads
    assert winner._state.features.values(T0 + 10)["page_views_24h"] == 1.0  # type: ignore[union-attr]

    # a replay hands off nothing new: the first hand-off stays
    assert not cfg.handoffs.put("m1", b"")  # type: ignore[union-attr]


def test_a_winner_goes_on_without_a_hand_off_that_never_comes(valkey, caplog) -> None:
    wall = Wall()
    cfg = config(valkey, wall, wait_s=5.0)
    winner = step(cfg)
    winner.on_batch([notice(ABSORB, "W", "m-never", "L", T0), ev("b1", "W", "order_paid", T0, amount=5.0)])
    assert winner._state.waiting is not None
    wall.now += 6.0
    got, _ = winner.on_notify()
    assert winner._state.waiting is None
    assert [e.event_id for out in got for e in out.events if e.origin != ENGINE] == ["b1"]
    assert "no hand-off of merge m-never" in caplog.text


def test_a_loser_keeps_its_running_journeys_and_hands_off_what_its_events_set(valkey) -> None:
    cfg = config(valkey, Wall())
    state = new_state(PLAN, cfg.ttl_ms, cfg.max_ids, cfg.lateness_ms, journeys=True, sketch=cfg.sketch)
    loser = ProfileLogic(state, cfg, False)
    loser.on_batch([ev("a1", "L", "order_paid", T0, amount=30.0)])
    js = loser._state.journeys
    assert js is not None
    js.attrs = {"tier": ("gold", T0)}
    js.instances = [Instance("winback", 1, 2, "a1", {}, T0, T0 + HOUR)]
    _, keep = loser.on_batch([notice(HANDOFF, "L", "m2", "W", T0 + 5)])
    assert keep == RETAIN and loser._state.journeys.instances  # type: ignore[union-attr]
    assert not loser._state.features.held and loser._state.scoring is None  # type: ignore[union-attr]
    moved = pickle.loads(cfg.handoffs.get("m2"))  # type: ignore[union-attr]
    moved.bind(PLAN, RfmSketch())
    assert moved.profile_id == "L" and moved.features.values(T0 + 5)["orders_30d"] == 1.0
    assert moved.journeys.attrs == {"tier": ("gold", T0)} and moved.journeys.instances == []
    assert moved.scoring is None and len(moved.seen) == 1


def test_a_chain_of_merges_at_the_end_of_input_folds_every_state_without_waiting(valkey) -> None:
    """X merges into M, then M into C, all in the last batch, through a real Bytewax
    stateful_batch on one worker: Bytewax asks the keys in turn and no timer fires after
    the end, so M (itself waiting for X) hands off at once with what it holds, and C
    waits in its place."""
    cfg = config(valkey, Wall(), wait_s=3.0)
    cfg = dataclasses.replace(cfg, clock=time.time, stream=StreamClock(0, time.time))

    def builder(resume: object) -> _ProfileState:
        return _ProfileState(step(cfg))

    items = [
        ev("c0", "C", "order_paid", T0, amount=1.0), ev("m0", "M", "order_paid", T0 + 1, amount=10.0),
        ev("x0", "X", "order_paid", T0 + 2, amount=100.0),
        notice(HANDOFF, "X", "ch1", "M", T0 + 10), notice(ABSORB, "M", "ch1", "X", T0 + 10),
        ev("r1", "M", "page_view", T0 + 10),
        notice(HANDOFF, "M", "ch2", "C", T0 + 20), notice(ABSORB, "C", "ch2", "M", T0 + 20),
        ev("r2", "C", "order_paid", T0 + 20, amount=0.5),
    ]  # fmt: skip
    flow = Dataflow("chain")
    keyed = op.flat_map_batch(
        "k", op.input("in", flow, TestingSource(items, batch_size=100)), Keyed(person_of, wire=True)
    )
    seen: list[tuple[str, ProfileOut]] = []
    op.inspect("i", op.stateful_batch("profile", keyed, builder), lambda _, kv: seen.append(kv))
    started = time.monotonic()
    run_main(flow)
    assert time.monotonic() - started < 2.0  # no wait ran out
    last = {key: u for key, out in seen for u in out.updates}
    c = last["C"].full or last["C"].values
    assert (c["orders_30d"], c["revenue_30d"]) == (4.0, 111.5)  # one person's four orders
    stored = sorted(e.event_id for _, out in seen for e in out.events if e.origin != ENGINE)
    assert stored == ["c0", "m0", "r1", "r2", "x0"]


def test_at_the_end_of_input_a_winner_waits_for_every_hand_off_it_holds(valkey) -> None:
    cfg = config(valkey, Wall(), wait_s=5.0)
    cfg = dataclasses.replace(cfg, clock=time.time, stream=StreamClock(0, time.time))
    w, l1, l2 = step(cfg), step(cfg), step(cfg)
    l1.on_batch([ev("l1", "L1", "order_paid", T0, amount=10.0)])
    l2.on_batch([ev("l2", "L2", "order_paid", T0 + 1, amount=20.0)])
    w.on_batch([ev("w0", "W", "order_paid", T0 + 2, amount=30.0)])
    w.on_batch(
        [
            notice(ABSORB, "W", "e1", "L1", T0 + 10), ev("r1", "W", "order_paid", T0 + 10, amount=1.0),
            notice(ABSORB, "W", "e2", "L2", T0 + 11), ev("r2", "W", "order_paid", T0 + 11, amount=2.0),
        ]
    )  # fmt: skip
    l1.on_batch([notice(HANDOFF, "L1", "e1", "W", T0 + 10)])
    late = threading.Timer(0.3, lambda: l2.on_batch([notice(HANDOFF, "L2", "e2", "W", T0 + 11)]))
    late.start()  # the second loser on another worker, a moment later
    got, _ = w.on_eof()
    late.join()
    assert w._state.waiting is None
    assert [e.event_id for out in got for e in out.events if e.origin != ENGINE] == ["r1", "r2"]
    assert orders(w, T0 + 11) == (5.0, 63.0)
