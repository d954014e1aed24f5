"""eventId dedupe: repeats inside the window are dropped, memory stays bounded."""

from __future__ import annotations

import pickle
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.digests import key64
from flows.features.dedupe import SeenIds


def test_repeat_within_ttl_is_dropped_and_after_ttl_passes():
    s = SeenIds(ttl_ms=60_000, cap=100)
    assert s.first_time("a", 1_000)
    assert not s.first_time("a", 30_000)
    assert s.first_time("b", 200_000)  # pushes the horizon past "a"
    assert s.first_time("a", 200_001)


def test_pickle_round_trip_keeps_memory():
    s = SeenIds(ttl_ms=60_000, cap=100)
    s.first_time("a", 1)
    clone = pickle.loads(pickle.dumps(s))
    assert not clone.first_time("a", 2)
    assert clone.first_time("b", 2)


def test_a_snapshot_holding_the_ids_themselves_restores_and_forgets_the_oldest_first():
    # (ttl, cap, newest, id -> time, arrival order): the state before the ids were digests
    s = SeenIds.__new__(SeenIds)
    s.__setstate__((60_000, 2, 5, {"b": 5, "a": 1}, ["a", "b"]))
    assert not s.first_time("a", 6) and not s.first_time("b", 6)
    assert s.first_time("c", 7)  # over the cap of 2: the oldest ("a") goes
    assert s.first_time("a", 8) and not s.first_time("c", 8)


def test_a_memory_of_blake2b_digests_still_drops_its_repeats_until_they_leave_the_window():
    # (ttl, cap, newest, digests then times): a snapshot from before the ids were XXH3 digests
    ids = sorted((key64(e), ts) for e, ts in [("a", 1_000), ("b", 2_000)])
    s = SeenIds.__new__(SeenIds)
    s.__setstate__((60_000, 100, 2_000, array("q", [k for k, _ in ids] + [t for _, t in ids])))
    assert not s.first_time("a", 3_000) and not s.first_time("b", 3_000), "repeats of the restored ids"
    assert s.first_time("c", 3_000) and not s.first_time("c", 3_001), "new ids under the new digest"
    again = pickle.loads(pickle.dumps(s))  # a snapshot taken now keeps the old ids' digests too
    assert not again.first_time("a", 4_000)
    assert again.first_time("d", 200_000)  # past the window: the old ids are gone
    assert again.first_time("a", 200_001) and not again.first_time("a", 200_002)
    assert again._legacy_ms == -1, "once out of the window, no second lookup"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10_000)), max_size=300),
    st.integers(1, 20),
)
def test_bounded_and_never_drops_a_first_occurrence(events, cap):
    s = SeenIds(ttl_ms=2_000, cap=cap)
    seen_before: set[str] = set()
    for n, ts in events:
        eid = f"e{n}"
        first = s.first_time(eid, ts)
        if eid not in seen_before:
            assert first, "a new id must never be dropped"
        seen_before.add(eid)
        assert len(s) <= cap


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=30))
def test_repeats_inside_window_and_cap_are_always_dropped(ids):
    s = SeenIds(ttl_ms=10**9, cap=1000)
    out = [s.first_time(f"e{i}", 5) for i in ids]
    assert sum(out) == len(set(ids))
