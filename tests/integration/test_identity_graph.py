"""The identity graph against a real Valkey: linking, merging into the oldest person, the
limits that keep shared identifiers from over-merging, replays, and a plain union-find as
the oracle for any order and batching."""

from __future__ import annotations

import socket
import uuid

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.errors import SinkError
from flows.core.pii import PiiProtector, profile_from_hashes
from sinks.identity_graph import MEMO_BUCKET, Identifier, IdentityGraph, Position
from sinks.redis_store import connect
from sinks.retry import RetryPolicy

FAST = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)


def graph(url: str, **kw) -> IdentityGraph:
    """A graph of its own (a fresh key prefix) on the shared server."""
    return IdentityGraph(connect(url, 5.0), FAST, prefix=f"t{uuid.uuid4().hex[:10]}:{{idg}}", **kw)


def ids(**named: str) -> list[Identifier]:
    return [Identifier(name, key) for name, key in named.items()]


def test_identifiers_seen_together_link_their_persons_into_the_oldest(valkey):
    g = graph(valkey)
    web, app = g.resolve([(1_000, ids(phone="p1")), (2_000, ids(deviceId="d1"))])
    assert (web.person, app.person) == ("id:phone:p1", "id:deviceId:d1")
    (login,) = g.resolve([(3_000, ids(phone="p1", deviceId="d1", email="e1"))])
    assert login.person == "id:phone:p1"  # first seen at 1,000: the older person
    assert login.merges == (("m:id:deviceId:d1>id:phone:p1", "id:deviceId:d1", "id:phone:p1"),)
    assert {(i.name, i.key) for i in g.identifiers_of("id:phone:p1")} == {
        ("phone", "p1"),
        ("deviceId", "d1"),
        ("email", "e1"),
    }
    assert g.identifiers_of("id:deviceId:d1") == []
    assert g.person_of(Identifier("deviceId", "d1")) == "id:phone:p1"
    assert g.merges() == {"m:id:deviceId:d1>id:phone:p1": ("id:deviceId:d1", "id:phone:p1", 3_000)}
    # replaying everything changes nothing and merges nothing again
    again = g.resolve(
        [(1_000, ids(phone="p1")), (2_000, ids(deviceId="d1")), (3_000, ids(phone="p1", deviceId="d1"))]
    )
    assert [r.person for r in again] == ["id:phone:p1"] * 3 and all(not r.merges for r in again)


def test_a_new_person_keeps_the_profile_id_its_identifiers_derive_today(valkey):
    pii = PiiProtector(b"k", ())
    raw = {"email": "a@example.com", "phone": "13800000001"}
    _, hashes, _, _ = pii.protect(raw, {})
    (r,) = graph(valkey).resolve([(5, [Identifier(n, h) for n, h in hashes.items()])])
    assert r.person == profile_from_hashes(raw, hashes)
    (crm,) = graph(valkey).resolve([(5, ids(email="e", profileId="crm-42"))])
    assert crm.person == "crm-42"  # a CRM id is the person's id


def test_a_device_shared_by_two_people_merges_no_one(valkey):
    g = graph(valkey)
    (mum,) = g.resolve([(1, ids(phone="mum", deviceId="tablet"))])
    (kid,) = g.resolve([(2, ids(phone="kid", deviceId="tablet"))])
    assert kid.person == "id:phone:kid" and not kid.merges
    assert kid.refused == ((Identifier("deviceId", "tablet"), "limit:phone"),)
    assert g.person_of(Identifier("deviceId", "tablet")) == mum.person


def test_a_second_phone_is_refused_not_merged_and_two_crm_ids_never_merge(valkey):
    g = graph(valkey)
    g.resolve([(1, ids(unionId="u1", phone="p1")), (2, ids(phone="p2"))])
    (r,) = g.resolve([(3, ids(unionId="u1", phone="p2"))])
    assert r.person == "id:unionId:u1" and not r.merges
    assert r.refused == ((Identifier("phone", "p2"), "limit:phone"),)
    g.resolve([(4, ids(profileId="c1", email="shared@x"))])
    (c2,) = g.resolve([(5, ids(profileId="c2", email="shared@x"))])
    assert c2.person == "c2" and c2.refused == ((Identifier("email", "shared@x"), "limit:profileId"),)


def test_only_an_identifier_that_breaks_a_limit_is_left_out(valkey):
    g = graph(valkey)
    g.resolve([(1, ids(profileId="c1", phone="p1")), (2, ids(phone="p2"))])
    (r,) = g.resolve([(3, ids(profileId="c1", phone="p2", deviceId="d-new"))])
    assert r.person == "c1" and not r.merges
    assert r.refused == ((Identifier("phone", "p2"), "limit:phone"),)  # the device is innocent
    assert g.person_of(Identifier("deviceId", "d-new")) == "c1"


def test_limits_and_priority_are_configurable(valkey):
    g = graph(valkey, limits={"phone": 2}, priority=("email", "phone"))
    g.resolve([(1, ids(phone="p1")), (2, ids(phone="p2"))])
    (both,) = g.resolve([(3, [Identifier("phone", "p1"), Identifier("phone", "p2")])])
    assert both.person == "id:phone:p1" and len(both.merges) == 1 and not both.refused  # two allowed
    (r,) = g.resolve([(4, ids(phone="p3", email="e"))])
    assert r.person == "id:email:e"  # email is trusted first here


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, items: list[str]) -> None:
        roots = [self.find(i) for i in items]
        for r in roots[1:]:
            self.parent[r] = roots[0]


NAMES = ("unionId", "phone", "email", "openId", "deviceId")
linking_event = st.tuples(
    st.integers(0, 10_000),
    st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 7)), min_size=1, max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(linking_event, min_size=1, max_size=25), st.randoms(use_true_random=False), st.data())
def test_any_order_and_batching_gives_the_union_find_partition(valkey, events, rng, data):
    no_limits = graph(valkey, limits={})
    order = list(events)
    rng.shuffle(order)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(order)), max_size=5)))
    batches = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True) if a < b]
    resolved = []
    for b in batches:
        resolved += no_limits.resolve([(ts, ids_of(pairs)) for ts, pairs in b])
    oracle = UnionFind()
    for _, pairs in events:
        oracle.union([f"{n}:{k}" for n, k in pairs])
    every = {f"{n}:{k}" for _, pairs in events for n, k in pairs}
    person = {i: no_limits.person_of(Identifier(*i.split(":"))) for i in every}
    assert all(p is not None for p in person.values())
    for a in every:  # same person exactly when the oracle puts them in one set
        for b in every:
            assert (person[a] == person[b]) == (oracle.find(a) == oracle.find(b))
    assert len(resolved) == len(order) and not any(r.refused for r in resolved)  # no limits here
    # a replay of everything, in one batch, merges nothing and resolves to the final persons
    replay = no_limits.resolve([(ts, ids_of(pairs)) for ts, pairs in events])
    assert all(not r.merges for r in replay)
    assert [r.person for r in replay] == [person[f"{pairs[0][0]}:{pairs[0][1]}"] for _, pairs in events]


def ids_of(pairs: list[tuple[str, int]]) -> list[Identifier]:
    return [Identifier(n, str(k)) for n, k in pairs]


def test_on_redis_cluster_a_batch_is_one_call_in_one_slot(valkey_cluster):
    g = IdentityGraph(
        connect(valkey_cluster, 5.0, retry=FAST), FAST, prefix=f"c{uuid.uuid4().hex[:8]}:{{idg}}"
    )
    out = g.resolve([(1, ids(phone="a")), (2, ids(email="b")), (3, ids(phone="a", email="b"))])
    assert [r.person for r in out] == ["id:phone:a", "id:email:b", "id:phone:a"]
    assert g.person_of(Identifier("email", "b")) == "id:phone:a"


def test_a_server_that_is_down_is_retried_then_fails_loudly(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis.Redis(port=port, socket_timeout=0.2, socket_connect_timeout=0.2)
    g = IdentityGraph(client, RetryPolicy(2, 0.01, 0.01))
    with pytest.raises(SinkError, match="identity graph"):
        g.resolve([(1, ids(phone="a"))])
    assert "identity graph (1 events) failed (attempt 1" in caplog.text


def test_a_replayed_record_goes_where_it_went_the_first_time(valkey):
    g = graph(valkey, memo_records=4)
    at = [Position("kafka:t", 0, n) for n in range(3)]
    batch = [(1, ids(phone="p1")), (2, ids(deviceId="d1")), (3, ids(phone="p1", deviceId="d1"))]
    first = g.resolve(batch, at)
    assert [r.person for r in first] == ["id:phone:p1", "id:deviceId:d1", "id:phone:p1"]
    assert first[2].merges
    # after a crash the source replays from offset 1: the device's record still goes to the
    # device's person (its state in the snapshot did not see it yet), the link merges again
    again = g.resolve(batch[1:], at[1:])
    assert again == first[1:]
    # a record with no position, or a new one, goes to the person the graph knows now
    (now,) = g.resolve([(2, ids(deviceId="d1"))])
    (later,) = g.resolve([(4, ids(deviceId="d1"))], [Position("kafka:t", 0, 3)])
    assert now.person == later.person == "id:phone:p1"


def test_a_partitions_memo_keeps_a_bounded_window(valkey):
    g = graph(valkey, memo_records=MEMO_BUCKET)  # this bucket and the one before it
    client = g._client
    memo = f"{g.keys[0].rsplit(':', 1)[0]}:memo:kafka:t:0"
    for bucket in range(4):
        g.resolve([(1, ids(phone=f"p{bucket}"))], [Position("kafka:t", 0, bucket * MEMO_BUCKET)])
    assert [client.exists(f"{memo}:{b}") for b in range(4)] == [0, 0, 1, 1]
    assert 0 < client.ttl(f"{memo}:3") <= 86_400


def test_each_change_of_owner_is_reported_once_in_the_graphs_order(valkey):
    g = graph(valkey)
    a, b, link, again = g.resolve(
        [
            (1, ids(phone="p1")),
            (2, ids(deviceId="d1")),
            (3, ids(phone="p1", deviceId="d1")),
            (4, ids(phone="p1")),
        ]
    )
    assert [(c.identifier, c.merge_id) for c in a.changed] == [(Identifier("phone", "p1"), "")]
    merge = "m:id:deviceId:d1>id:phone:p1"
    assert [(c.identifier, c.merge_id) for c in link.changed] == [
        (Identifier("deviceId", "d1"), merge),
        (Identifier("person", "id:deviceId:d1"), merge),
    ]
    assert a.changed[0].seq < b.changed[0].seq < link.changed[0].seq and not again.changed
    assert g.identifiers_of("id:phone:p1") == ids(phone="p1", deviceId="d1")  # not the merged person


def test_a_remembered_answer_is_only_for_the_record_it_was_given_to(valkey):
    g = graph(valkey)
    (first,) = g.resolve([(1, ids(phone="h"))], [Position("file:/x.jsonl", 0, 0, "e1")])
    # the file was written again: another record at the same offset is resolved afresh
    (other,) = g.resolve([(2, ids(phone="h3"))], [Position("file:/x.jsonl", 0, 0, "e9")])
    assert first.person == "id:phone:h" and other.person == "id:phone:h3"
    assert g.person_of(Identifier("phone", "h3")) == "id:phone:h3"


def test_a_profile_id_that_names_a_person_joins_it(valkey):
    g = graph(valkey)
    old, young = g.resolve([(100, ids(phone="p")), (200, ids(deviceId="d"))])
    g.resolve([(300, ids(phone="p", deviceId="d"))])  # the device's person merges into the phone's
    # a CRM sends the engine's ids back as profileIds: the merged one goes to the person it
    # belongs to now, a live one is joined and made no younger
    merged, live = g.resolve([(400, ids(profileId=young.person)), (900, ids(profileId=old.person))])
    assert merged.person == live.person == old.person
    assert int(g._client.hget(g.keys[1], old.person)) == 100
    # within the person's limits: it holds one profileId already
    assert live.refused == ((Identifier("profileId", old.person), "limit:profileId"),)
