"""Coalescing the online store's updates writes the same hash as writing them in order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flows.core.messages import FeatureUpdate
from sinks.feature_store import coalesce

NAMES = ("a", "b", "c")


def apply(hash_: dict[str, object], u: FeatureUpdate) -> None:
    """What the store's HSET / HDEL of one update does to a profile's hash."""
    hash_.update(u.values)
    hash_["as_of"] = u.as_of_ms
    if u.tags is not None:
        hash_["tags"] = u.tags
    if u.segment is not None:
        hash_["segment"] = u.segment
    for name in u.removed:
        hash_.pop(name, None)


updates = st.builds(
    lambda as_of, values, removed, tags, segment: FeatureUpdate(
        "p1", as_of, values, tuple(n for n in removed if n not in values), None, 0, tags, segment
    ),
    st.integers(0, 10),  # as_of may go back: an event's own time after a timer's refresh
    st.dictionaries(st.sampled_from(NAMES), st.floats(0, 9, allow_nan=False)),
    st.lists(st.sampled_from(NAMES), unique=True),
    st.none() | st.tuples(st.sampled_from(("x", "y"))),
    st.none() | st.sampled_from(("new", "lost")),
)


@given(st.lists(updates, min_size=1, max_size=6))
def test_coalesced_updates_write_what_the_updates_in_order_write(us):
    in_order: dict[str, object] = {}
    for u in us:
        apply(in_order, u)
    coalesced: dict[str, object] = {}
    (one,) = coalesce(us)
    apply(coalesced, one)
    assert coalesced == in_order


def test_a_later_update_with_an_earlier_as_of_keeps_its_own_time():
    """A timer refreshed the profile as of 2,000; its next event is as of 1,500 (its own
    time): the hash must say 1,500, the time its values are as of."""
    refresh = FeatureUpdate("p1", 2_000, {"recency": 0.5}, (), None, 0)
    event = FeatureUpdate("p1", 1_500, {"recency": 0.0}, (), None, 7)
    (one,) = coalesce([refresh, event])
    assert (one.as_of_ms, one.values) == (1_500, {"recency": 0.0})
