"""Two persons merged hold what one would have held: features and dedupe memory folded
separately and absorbed equal the same events folded under one id."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.features.dedupe import SeenIds
from flows.features.plan import FeaturePlan
from flows.features.windows import ProfileFeatures
from tests.unit.features.test_windows import BASE_TS, FEATURES, LATENESS, SILENT, H, check, diff, ev, streams


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_merged_features_equal_the_events_folded_under_one_id(events, data):
    # in event-time order, each a millisecond apart: no event is late and none ties, so
    # one id's fold has no arrival order to depend on
    events = [e._replace(ts_ms=e.ts_ms + i) for i, e in enumerate(sorted(events, key=lambda e: e.ts_ms))]
    side = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    plan = FeaturePlan(FEATURES)
    one, a, b = (ProfileFeatures(plan, LATENESS) for _ in range(3))
    for e, theirs in zip(events, side, strict=True):
        assert one.add(e)
        assert (b if theirs else a).add(e)
    a.absorb(b)
    newest = events[-1].ts_ms
    assert a.max_ts == newest
    for gap in (0, *SILENT):
        want = one.values(newest + gap)
        assert not diff(FEATURES, a.values(newest + gap), want), (
            gap,
            diff(FEATURES, a.values(newest + gap), want),
        )
        check(a, FEATURES, events, newest + gap, "merged")
    assert a.dirty & a.held == a.held  # every feature held is reported at the next update
    # it goes on as one: the next event lands on the merged state as on the single one
    nxt = events[-1]._replace(event_id="next", ts_ms=newest + 1)
    assert a.add(nxt) and one.add(nxt)
    assert not diff(FEATURES, a.values(newest + 1), one.values(newest + 1))


def test_merging_into_an_empty_state_or_from_one_keeps_the_other():
    plan = FeaturePlan(FEATURES)
    full, empty = ProfileFeatures(plan, LATENESS), ProfileFeatures(plan, LATENESS)
    for i, t in enumerate(("page_view", "cart_add", "order_paid")):
        assert full.add(ev(i, t, BASE_TS + i * H, {"amount": 10 * i, "sku": "AB"[i % 2]}))
    before = full.values(full.max_ts)
    full.absorb(empty)
    assert full.values(full.max_ts) == before
    empty.absorb(full)
    assert empty.values(full.max_ts) == before


def test_merged_dedupe_memory_drops_a_repeat_under_either_alias():
    a, b = SeenIds(ttl_ms=10_000, cap=64), SeenIds(ttl_ms=10_000, cap=64)
    for i in range(20):
        assert (a if i % 3 else b).first_time(f"e{i}", 1_000 + i)
    assert a.first_time("both", 1_500) and b.first_time("both", 1_400)
    a.absorb(b)
    assert len(a) == 21
    assert not any(a.first_time(f"e{i}", 2_000) for i in range(20))
    assert not a.first_time("both", 2_000)
    assert a.first_time("new", 2_000)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 3_000), st.booleans()), max_size=80))
@example([(0, 0, False), (0, 2001, False), (1, 3000, False)])  # nothing to take in: a's own step holds
def test_merged_dedupe_memory_stays_in_its_window_and_cap(ids):
    a, b = SeenIds(ttl_ms=5_000, cap=16), SeenIds(ttl_ms=5_000, cap=16)
    ts = 0
    for eid, step, theirs in ids:
        ts += step
        (b if theirs else a).first_time(f"e{eid}", ts)
    newest = max(a.newest_ms, b.newest_ms)
    a.absorb(b)
    assert len(a) <= 16 and a.newest_ms == newest
    held = a.__getstate__()[3]
    # nothing behind the window, which expiry moves in steps (a sixteenth of it at a time)
    assert all(t >= newest - 5_000 - (5_000 >> 4) for t in held[len(a) :])


def test_a_merge_keeps_the_newest_event_time_even_when_the_other_holds_no_feature():
    # a plan with only an order count: a page view leaves no state, but moves the newest time
    from flows.features.declarations import parse_features

    fs = parse_features(
        {"feature": [{"name": "orders_7d", "agg": "count", "types": ["order_paid"], "window": "7d"}]}
    )
    plan = FeaturePlan(fs)
    a, b = ProfileFeatures(plan, LATENESS), ProfileFeatures(plan, LATENESS)
    assert a.add(ev(1, "order_paid", BASE_TS))
    assert b.add(ev(2, "page_view", BASE_TS + 5 * H))
    a.absorb(b)
    assert a.max_ts == BASE_TS + 5 * H
    assert not a.add(ev(3, "order_paid", BASE_TS + 3 * H))  # late for the person, as for one fold


def test_merged_journey_memory_keeps_the_newest_attributes_within_the_bound():
    from rules.attributes import MAX_ATTRS
    from rules.runtime import ProfileJourneys

    a, b = ProfileJourneys(), ProfileJourneys()
    a.attrs = {f"a{i}": (i, 1_000 + i) for i in range(MAX_ATTRS)}
    b.attrs = {f"b{i}": (i, 2_000 + i) for i in range(MAX_ATTRS)}
    b.attrs["a0"] = ("newer", 5_000)
    a.absorb(b.hand_off())
    assert len(a.attrs) == MAX_ATTRS
    assert a.attrs["a0"] == ("newer", 5_000)  # the newest update of each, the newest 64 kept
    assert set(a.attrs) == {"a0", *(f"b{i}" for i in range(1, MAX_ATTRS))}
