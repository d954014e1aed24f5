"""The profile step writes a profile's running journey instances to the feature store
when they change, and only then (what `scrm profile show` lists)."""

from __future__ import annotations

from flows.core.contract import Event
from flows.core.messages import FeatureUpdate
from flows.core.settings import load_settings
from flows.core.streamtime import StreamClock
from flows.dataflow.build import feature_set
from flows.dataflow.profile import new_state
from flows.dataflow.profile_step import ProfileConfig, ProfileLogic
from flows.dataflow.wakes import WAKE
from flows.features.plan import FeaturePlan
from flows.features.rfm import RfmSketch
from rules.journeys.parse import parse_journey
from tests.unit.rules.test_runtime import HOUR, T0, Catalog, warmup

PLAN = FeaturePlan(feature_set(load_settings(env={})))


class Wall:
    def __init__(self) -> None:
        self.t = T0 / 1000

    def __call__(self) -> float:
        return self.t


def ev(etype: str, ts: int) -> Event:
    return Event(f"{etype}-{ts}", "p1", etype, ts, "app", {}, {}, {}, ts, "t", 0, 0)


def _logic(journeys: Catalog, wall: Wall) -> ProfileLogic:
    cfg = ProfileConfig(
        features=PLAN, sketch=RfmSketch(), ttl_ms=86_400_000, max_ids=100, lateness_ms=HOUR, refresh_s=60.0,
        idle_s=600.0, snapshot_ms=300_000, stream=StreamClock(0, wall), clock=wall, recovery=False,
        journeys=journeys,
    )  # fmt: skip
    st = new_state(PLAN, cfg.ttl_ms, cfg.max_ids, cfg.lateness_ms, journeys=True, sketch=cfg.sketch)
    return ProfileLogic(st, cfg, False)


def written(outs) -> list[str | None]:
    return [u.journeys for o in outs for u in o.updates if isinstance(u, FeatureUpdate)]


def test_running_instances_are_written_when_they_change() -> None:
    logic = _logic(Catalog(warmup()), Wall())
    outs, _ = logic.on_batch([ev("signup", T0)])
    assert written(outs) == [f"new_user_warmup|1|1|{T0 + HOUR}|{T0}"]  # waiting an hour, then node 1
    outs, _ = logic.on_batch([ev("page_view", T0 + 60_000)])
    assert written(outs) == [None]  # the same instance, the same place: not written again
    outs, _ = logic.on_batch([ev("page_view", T0 + 2 * HOUR)])
    assert written(outs) == [""]  # it sent and ended
    outs, _ = logic.on_batch([ev("page_view", T0 + 3 * HOUR)])
    assert written(outs) == [None]


def _chained(wall: Wall) -> ProfileLogic:
    """A journey that tags the profile an hour after its signup, and one that the tag starts."""
    tagger = parse_journey(
        {"id": "tagger", "name": "t", "priority": 5, "entry": {"policy": "once"},
         "trigger": {"event": {"type": "signup"}},
         "nodes": [{"id": "settle", "type": "wait", "duration": "1h"},
                   {"id": "mark", "type": "tag", "add": "warm"}]},
        "t",
    )  # fmt: skip
    greeter = parse_journey(
        {"id": "greeter", "name": "g", "priority": 5, "entry": {"policy": "once"},
         "trigger": {"tag": {"added": "warm"}},
         "nodes": [{"id": "hello", "type": "send", "channel": "email", "template": "hello"}]},
        "t",
    )  # fmt: skip
    return _logic(Catalog(tagger, greeter), wall)


def _sends(outs) -> list[tuple[str, str, int]]:
    return [(i.journey_id, i.node_id, i.ts_ms) for o in outs for i in o.intents if i.kind == "send"]


def test_a_tag_set_by_a_due_step_starts_its_journeys_whether_a_wake_or_the_next_event_fires_it() -> None:
    wall = Wall()
    woken = _chained(wall)
    woken.on_batch([ev("signup", T0)])
    wall.t += 2 * HOUR / 1000  # silent: the wait runs out in a wake
    by_wake, _ = woken.on_batch([WAKE])
    wall2 = Wall()
    busy = _chained(wall2)
    busy.on_batch([ev("signup", T0)])
    by_event, _ = busy.on_batch([ev("page_view", T0 + 2 * HOUR)])  # the next event gets there first
    assert _sends(by_wake) == _sends(by_event) == [("greeter", "hello", T0 + HOUR)]
