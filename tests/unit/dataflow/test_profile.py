"""Per-profile state: dedupe + features; partial store updates add up to the full map."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.contract import Event
from flows.core.settings import load_settings
from flows.dataflow.build import feature_set
from flows.dataflow.profile import ProfileState, new_state
from flows.features.declarations import parse_features
from flows.features.plan import FeaturePlan
from flows.features.rfm import RfmSketch

FS = feature_set(load_settings(env={}))
PLAN = FeaturePlan(FS)
HOUR = 3_600_000
T0 = 1_790_000_000_000


def ev(i: int, etype: str, ts: int, amount: float | None = None) -> Event:
    props = {} if amount is None else {"amount": amount, "price": amount}
    return Event(f"e{i}", "p1", etype, ts, "app", props, {}, {}, 0, "t", 0, i)


def fresh() -> ProfileState:
    return new_state(PLAN, 86_400_000, 1000, HOUR, sketch=RfmSketch())


def test_pickle_round_trip_keeps_every_part():
    s = fresh()
    s.ingest([ev(1, "order_paid", T0, 10.0), ev(2, "page_view", T0 + 1000)])
    s.update("p1", T0 + 1000, 60_000, 0)
    clone = pickle.loads(pickle.dumps(s))
    clone.bind(PLAN, s.sketch)
    assert (clone.profile_id, clone.last_as_of, clone.stored) == (
        s.profile_id,
        s.last_as_of,
        s.stored,
    )
    assert clone.ingest([ev(1, "order_paid", T0, 10.0)])[1] == 1, "dedupe memory survived"
    assert clone.features.values(T0 + 5000) == s.features.values(T0 + 5000)


def test_late_events_are_kept_and_marked_but_change_nothing():
    s = fresh()
    s.ingest([ev(1, "order_paid", T0 + 3 * HOUR, 10.0)])
    before = s.features.values(T0 + 3 * HOUR)
    out, dups, late = s.ingest([ev(2, "order_paid", T0, 99.0)])
    assert (dups, late) == (0, 1) and out[0].late is True
    assert s.features.values(T0 + 3 * HOUR) == before


steps = st.lists(
    st.tuples(
        st.sampled_from(["page_view", "order_paid", "add_to_cart", "order_created", "complaint", None]),
        st.integers(0, 6 * HOUR),  # event-time step; None type = a timer refresh only
        st.floats(1, 500, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(steps, st.integers(0, 3))
def test_partial_updates_applied_in_order_equal_the_full_map(seq, snapshot_minutes):
    """What the online store ends up holding (every update applied: HSET values, HDEL
    removed) equals the full feature map as of the last update."""
    s = fresh()
    store: dict[str, float] = {}
    ts = T0
    last_as_of = T0
    for i, (etype, step, amount) in enumerate(seq):
        ts += step
        if etype is not None:
            s.ingest([ev(i, etype, ts, amount)])
        upd = s.update("p1", ts, snapshot_minutes * 60_000, 0)
        now = s.features.values(ts)
        assert s.tags == {t.name for t in PLAN.tags if t.holds(now)}, "tags follow their rules"
        if upd is None:
            continue
        store.update(upd.values)
        for name in upd.removed:
            store.pop(name, None)
        if upd.full is not None:
            assert {k: v for k, v in upd.full.items() if not k.startswith("rfm_")} == s.features.values(ts)
        last_as_of = upd.as_of_ms
    rfm_keys = {"rfm_r", "rfm_f", "rfm_m"}  # scores: written with segment changes and snapshots
    assert {k: v for k, v in store.items() if k not in rfm_keys} == s.features.values(last_as_of)


def test_tags_enter_and_leave_with_events_and_stable_ids():
    s = fresh()
    s.ingest([ev(1, "order_paid", T0, 2500.0)])
    upd = s.update("p1", T0, 60_000, 0)
    assert upd is not None and set(upd.tags or ()) >= {"active", "high_value"}
    entered = [e for e in s.change_events(upd) if e.type.startswith("tag_")]
    assert {(e.type, e.props["tag"]) for e in entered} >= {
        ("tag_added", "active"),
        ("tag_added", "high_value"),
    }
    assert all(e.event_id == f"tag_added:{e.props['tag']}:p1:{T0}" and e.source == "engine" for e in entered)
    # 40 days of silence: active -> dormant, and the 90-day revenue still counts
    later = T0 + 40 * 86_400_000
    upd = s.update("p1", later, 60_000, 0)
    changes = {(e.type, e.props["tag"]) for e in s.change_events(upd) if e.type.startswith("tag_")}
    assert ("tag_removed", "active") in changes and ("tag_added", "dormant") in changes
    assert "high_value" in (upd.tags or ())
    assert s.change_events(upd) == [], "each change is reported once"


def test_a_restored_state_is_remapped_to_the_running_declarations_by_name():
    """A feature whose declaration changed starts empty; the others keep their state; the
    profile counts again in the sketch it is bound to."""
    decl = {"feature": [
        {"name": "orders_1d", "agg": "count", "types": ["order_paid"], "window": "1d"},
        {"name": "revenue_1d", "agg": "sum", "types": ["order_paid"], "value": "props.amount",
         "window": "1d"},
    ]}  # fmt: skip
    old = FeaturePlan(parse_features(decl))
    s = new_state(old, 86_400_000, 1000, HOUR, sketch=RfmSketch())
    s.ingest([ev(1, "order_paid", T0, 10.0), ev(2, "order_paid", T0 + 1000, 5.0)])
    saved = pickle.dumps(s)
    decl["feature"][1]["window"] = "7d"  # revenue_1d redeclared
    new = FeaturePlan(parse_features(decl))
    clone = pickle.loads(saved)
    sketch = RfmSketch()
    clone.bind(new, sketch)
    assert clone.features.values(T0 + 2000) == {"orders_1d": 2.0, "revenue_1d": 0.0}
    assert clone.features.plan is new and clone.sketch is sketch


def test_a_restored_profile_rereads_changed_tag_rules_at_its_next_update():
    decl = {
        "feature": [{"name": "orders_1d", "agg": "count", "types": ["order_paid"], "window": "1d"}],
        "tag": [{"name": "buyer", "when": [["orders_1d", ">=", 1]]}],
    }
    s = new_state(FeaturePlan(parse_features(decl)), 86_400_000, 1000, HOUR, sketch=RfmSketch())
    s.ingest([ev(1, "order_paid", T0, 10.0)])
    s.update("p1", T0, 60_000, 0)
    assert s.tags == {"buyer"}
    decl["tag"][0]["when"] = [["orders_1d", ">=", 2]]  # the rule tightened while it was down
    clone = pickle.loads(pickle.dumps(s))
    clone.bind(FeaturePlan(parse_features(decl)), RfmSketch())
    upd = clone.update("p1", T0 + 1000, 60_000, 0)  # no tag input moved
    assert clone.tags == frozenset() and upd is not None and upd.tags == ()
    assert [e.type for e in clone.change_events(upd)] == ["tag_removed"]
