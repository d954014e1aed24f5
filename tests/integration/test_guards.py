"""The guards against a real Valkey: every check, their order, windows in event time,
priority reserve, replay, batches, retries, and the race that atomicity prevents.

Each test uses its own profile ids (a uuid prefix): the Valkey is the session's.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.app.testing import free_port
from flows.core.durations import DAY_MS
from flows.core.errors import SinkError
from rules.guards import Guards, mark_delivered, set_consent, unsubscribe
from rules.policy import (
    ActionRequest,
    Cap,
    Decision,
    cap_key,
    consent_key,
    decision_key,
    dedupe_key,
    suppress_key,
)
from sinks.retry import RetryPolicy

T0 = 1_717_200_000_000  # 2024-06-01 00:00 UTC, event time
HOUR = 3_600_000
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
THREADS_PER_WORKER = 4
WORKER = Path(__file__).with_name("guards_worker.py")


def request(pid: str, aid: str | None = None, **kw: object) -> ActionRequest:
    fields: dict[str, object] = {
        "action_id": aid or uuid.uuid4().hex,
        "profile_id": pid,
        "journey_id": "j1",
        "journey_version": 1,
        "node_id": "n1",
        "channel": "sms",
        "template": "t1",
        "priority": 50,
        "now_ms": T0,
    }
    fields.update(kw)
    return ActionRequest(**fields)  # type: ignore[arg-type]


def one(guards: Guards, pid: str, aid: str | None = None, **kw: object) -> Decision:
    [d] = guards.decide([request(pid, aid, **kw)])
    return d


def sr(d: Decision) -> tuple[str, str]:
    return d.status, d.reason


@pytest.fixture
def client(valkey: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(valkey, socket_timeout=5, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def guards(valkey: str) -> Iterator[Guards]:
    g = Guards.from_url(valkey, timeout_s=5, retry=FAST)
    yield g
    g.close()


@pytest.fixture
def pid() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


# --- each check -----------------------------------------------------------------------------

DAY_SMS = Cap("profile", "sms", 1, DAY_MS)


def test_sent_records_cap_dedupe_mark_and_decision(guards: Guards, client: redis.Redis, pid: str) -> None:
    d = one(guards, pid, "a1", caps=(DAY_SMS,), dedupe_window_ms=HOUR, decision_ttl_ms=DAY_MS)
    assert d == Decision("a1", "sent", "ok", False)
    assert client.zrange(cap_key(pid, "profile", "sms"), 0, -1, withscores=True) == [("a1", float(T0))]
    assert 0 < client.pttl(cap_key(pid, "profile", "sms")) <= DAY_MS
    assert client.get(dedupe_key(pid, "t1")) == str(T0)
    assert 0 < client.pttl(dedupe_key(pid, "t1")) <= HOUR
    assert client.get(decision_key(pid, "a1")) == "sent|ok|pending"  # until the topic acks it
    assert 0 < client.pttl(decision_key(pid, "a1")) <= DAY_MS


def test_consent_is_granted_by_default_and_an_explicit_refusal_wins(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    assert one(guards, pid, channel="email").status == "sent"
    set_consent(client, pid, "email", False, ts_ms=T0)
    assert client.hget(consent_key(pid), "email") == "0"
    assert sr(one(guards, pid, channel="email")) == ("no_consent", "consent:email")
    assert one(guards, pid, channel="sms").status == "sent"
    set_consent(client, pid, "email", True, ts_ms=T0 + 1)
    assert one(guards, pid, channel="email").status == "sent"


def test_consent_records_apply_in_event_time_with_their_version(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    assert set_consent(client, pid, "email", False, ts_ms=T0 + 10, version="v2") == "applied"
    assert client.hget(consent_key(pid), "email:at") == f"{T0 + 10}|v2|"
    assert set_consent(client, pid, "email", True, ts_ms=T0) == "stale"  # older: changes nothing
    assert sr(one(guards, pid, channel="email")) == ("no_consent", "consent:email")
    assert set_consent(client, pid, "email", False, ts_ms=T0 + 10, version="v2") == "applied"  # a replay
    assert set_consent(client, pid, "email", True, ts_ms=T0 + 20, version="v3") == "applied"
    assert one(guards, pid, channel="email").status == "sent"


def test_a_refusal_of_every_channel_and_the_channels_own_records(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    set_consent(client, pid, None, False, ts_ms=T0)
    assert sr(one(guards, pid, channel="sms")) == ("no_consent", "consent:*")
    set_consent(client, pid, "sms", True, ts_ms=T0 + 1)  # newer, for sms only
    assert one(guards, pid, channel="sms").status == "sent"
    assert sr(one(guards, pid, channel="email")) == ("no_consent", "consent:*")
    set_consent(client, pid, None, False, ts_ms=T0 + 2)  # newer again, for every channel
    assert sr(one(guards, pid, channel="sms")) == ("no_consent", "consent:*")
    assert client.hget(consent_key(pid), "sms") is None


def test_a_re_subscribe_lifts_older_suppressions_and_not_newer_ones(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    assert unsubscribe(client, pid, "sms", ts_ms=T0) == "applied"
    assert sr(one(guards, pid, channel="sms")) == ("suppressed", "suppressed:sms")
    set_consent(client, pid, "sms", True, ts_ms=T0 + 5)
    assert one(guards, pid, channel="sms").status == "sent"
    # an unsubscribe older than the re-subscribe, arriving after it, does not undo it
    assert unsubscribe(client, pid, "sms", ts_ms=T0 + 3) == "stale"
    assert one(guards, pid, channel="sms").status == "sent"
    assert unsubscribe(client, pid, "sms", ts_ms=T0 + 9) == "applied"
    assert sr(one(guards, pid, channel="sms")) == ("suppressed", "suppressed:sms")
    # do-not-contact: a channel's re-subscribe does not lift it; one for every channel does
    unsubscribe(client, pid, None, ts_ms=T0 + 10)
    set_consent(client, pid, "sms", True, ts_ms=T0 + 11)
    assert sr(one(guards, pid, channel="sms")) == ("suppressed", "dnc")
    set_consent(client, pid, None, True, ts_ms=T0 + 12)
    assert client.smembers(suppress_key(pid)) == set()
    assert one(guards, pid, channel="sms").status == "sent"


def test_a_channel_record_older_than_the_every_channel_record_is_stale(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    set_consent(client, pid, None, False, ts_ms=T0 + 10)
    assert set_consent(client, pid, "sms", True, ts_ms=T0 + 5) == "stale"  # arrived late
    assert sr(one(guards, pid, channel="sms")) == ("no_consent", "consent:*")
    set_consent(client, pid, None, True, ts_ms=T0 + 20)
    assert set_consent(client, pid, "sms", False, ts_ms=T0 + 15) == "stale"
    assert one(guards, pid, channel="sms").status == "sent"


def test_at_the_same_time_a_refusal_beats_a_grant_in_either_order(
    guards: Guards, client: redis.Redis
) -> None:
    for first, second in ((True, False), (False, True)):
        pid = f"tie-{uuid.uuid4().hex[:8]}"
        set_consent(client, pid, "sms", first, ts_ms=T0)
        set_consent(client, pid, "sms", second, ts_ms=T0)
        assert sr(one(guards, pid)) == ("no_consent", "consent:sms")
        # an unsubscribe and a re-subscribe at the same time: the unsubscribe holds
        pid = f"tie-{uuid.uuid4().hex[:8]}"
        steps = [lambda p: unsubscribe(client, p, "email", ts_ms=T0),
                 lambda p: set_consent(client, p, "email", True, ts_ms=T0)]  # fmt: skip
        for step in steps if first else steps[::-1]:
            step(pid)
        assert sr(one(guards, pid, channel="email")) == ("suppressed", "suppressed:email")


def test_a_complaint_and_a_suppression_without_a_time_are_never_lifted_from_the_stream(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    assert unsubscribe(client, pid, "sms", ts_ms=T0, kind="complaint") == "applied"
    set_consent(client, pid, "sms", True, ts_ms=T0 + 5)
    set_consent(client, pid, None, True, ts_ms=T0 + 6)
    assert sr(one(guards, pid)) == ("suppressed", "suppressed:sms")
    # a complaint is never stale: arriving after a newer re-subscribe, it still holds
    assert unsubscribe(client, pid, "email", ts_ms=T0 + 1, kind="complaint") == "applied"
    assert sr(one(guards, pid, channel="email")) == ("suppressed", "suppressed:email")
    # a do-not-contact kept before suppressions had times, and a refusal likewise
    client.sadd(suppress_key(pid), "*")
    client.hset(consent_key(pid), "push", "0")
    set_consent(client, pid, None, True, ts_ms=T0 + 100)
    assert client.sismember(suppress_key(pid), "*")
    assert set_consent(client, pid, "push", True, ts_ms=T0 + 100) == "stale"
    assert sr(one(guards, pid, channel="push")) == ("no_consent", "consent:push")


RECORDS = st.lists(
    st.tuples(
        st.sampled_from(("grant", "revoke", "unsubscribe", "complaint")),
        st.sampled_from(("sms", "email", None)),
        st.integers(0, 3),  # few times: ties are common
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS, order=st.randoms(use_true_random=False))
def test_consent_records_decide_the_same_in_any_order(
    guards: Guards, client: redis.Redis, records: list[tuple[str, str | None, int]], order: random.Random
) -> None:
    def decisions(recs: list[tuple[str, str | None, int]]) -> list[tuple[str, str]]:
        pid = f"ord-{uuid.uuid4().hex[:8]}"
        for n, (op, channel, t) in enumerate(recs):
            ts = T0 + t
            if op in ("grant", "revoke"):
                set_consent(client, pid, channel, op == "grant", ts_ms=ts)
            else:
                unsubscribe(client, pid, channel, ts_ms=ts, event_id=f"e{n}", kind=op)
        return [sr(one(guards, pid, channel=c)) for c in ("sms", "email", "push")]

    shuffled = list(records)
    order.shuffle(shuffled)
    assert decisions(shuffled) == decisions(sorted(records, key=lambda r: r[2]))


def test_suppression_by_channel_and_do_not_contact(guards: Guards, client: redis.Redis, pid: str) -> None:
    unsubscribe(client, pid, "sms")
    assert sr(one(guards, pid, channel="sms")) == ("suppressed", "suppressed:sms")
    assert one(guards, pid, channel="email").status == "sent"
    unsubscribe(client, pid, None)
    assert client.smembers(suppress_key(pid)) == {"sms", "*"}
    assert sr(one(guards, pid, channel="email")) == ("suppressed", "dnc")
    assert sr(one(guards, pid, channel="sms")) == ("suppressed", "dnc")


def test_dedupe_window_is_measured_in_event_time(guards: Guards, client: redis.Redis, pid: str) -> None:
    assert one(guards, pid, dedupe_window_ms=HOUR).status == "sent"
    assert sr(one(guards, pid, dedupe_window_ms=HOUR, now_ms=T0 + HOUR - 1)) == ("deduped", "dedupe:t1:1h")
    assert one(guards, pid, dedupe_window_ms=HOUR, template="t2", now_ms=T0 + 1).status == "sent"
    # an hour of event time later (the key's wall-clock TTL has not run out) it sends again
    assert one(guards, pid, dedupe_window_ms=HOUR, now_ms=T0 + HOUR).status == "sent"
    assert client.get(dedupe_key(pid, "t1")) == str(T0 + HOUR)
    assert sr(one(guards, pid, dedupe_window_ms=HOUR, now_ms=T0 + HOUR + 5)) == ("deduped", "dedupe:t1:1h")
    # templates and reasons may be any Unicode
    assert one(guards, pid, dedupe_window_ms=HOUR, template="欢迎").status == "sent"
    assert sr(one(guards, pid, dedupe_window_ms=HOUR, template="欢迎")) == ("deduped", "dedupe:欢迎:1h")
    assert client.get(dedupe_key(pid, "欢迎")) == str(T0)
    # a dedupe window of 0 is off, and leaves no mark
    assert one(guards, pid, template="t3").status == "sent"
    assert one(guards, pid, template="t3").status == "sent"
    assert client.exists(dedupe_key(pid, "t3")) == 0


def test_checks_run_in_order_first_refusal_wins(guards: Guards, client: redis.Redis, pid: str) -> None:
    kw: dict[str, object] = {"caps": (DAY_SMS,), "dedupe_window_ms": DAY_MS}
    assert one(guards, pid, **kw).status == "sent"  # now the cap is full and t1 is marked
    unsubscribe(client, pid, "sms", ts_ms=T0)
    unsubscribe(client, pid, None, ts_ms=T0)
    set_consent(client, pid, "sms", False, ts_ms=T0)
    assert sr(one(guards, pid, **kw)) == ("no_consent", "consent:sms")
    set_consent(client, pid, "sms", True, ts_ms=T0 + 1)  # a re-subscribe: lifts sms, not the DNC
    assert sr(one(guards, pid, **kw)) == ("suppressed", "dnc")
    unsubscribe(client, pid, "sms", ts_ms=T0 + 2)
    client.srem(suppress_key(pid), "*")
    assert sr(one(guards, pid, **kw)) == ("suppressed", "suppressed:sms")
    client.srem(suppress_key(pid), "sms")
    assert sr(one(guards, pid, **kw)) == ("deduped", "dedupe:t1:1d")
    assert sr(one(guards, pid, **{**kw, "template": "t2"})) == ("capped", "cap:profile:sms:1/1d")
    # no refusal touched the cap or the dedupe mark
    assert client.zcard(cap_key(pid, "profile", "sms")) == 1
    assert client.get(dedupe_key(pid, "t1")) == str(T0)


def test_holdout_counts_no_cap_and_leaves_no_dedupe_mark(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    kw: dict[str, object] = {"caps": (DAY_SMS,), "dedupe_window_ms": DAY_MS}
    d = one(guards, pid, "h1", holdout=True, **kw)
    assert d == Decision("h1", "holdout", "holdout", False)
    assert client.get(decision_key(pid, "h1")) == "holdout|holdout"
    assert client.exists(cap_key(pid, "profile", "sms"), dedupe_key(pid, "t1")) == 0
    assert one(guards, pid, "h2", holdout=True, **kw).status == "holdout"
    assert one(guards, pid, "s1", **kw).status == "sent"  # the holdouts took no slot
    # a holdout that a guard would refuse is recorded with that refusal (same eligibility)
    assert sr(one(guards, pid, "h3", holdout=True, **kw)) == ("deduped", "dedupe:t1:1d")
    assert sr(one(guards, pid, "h4", holdout=True, template="t9", **kw)) == ("capped", "cap:profile:sms:1/1d")
    assert client.zrange(cap_key(pid, "profile", "sms"), 0, -1) == ["s1"]


# --- caps -----------------------------------------------------------------------------------


def test_rolling_cap_window_old_entries_fall_out_by_event_time(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    caps = (Cap("profile", "sms", 2, DAY_MS),)
    key = cap_key(pid, "profile", "sms")
    assert one(guards, pid, "a", caps=caps, now_ms=T0).status == "sent"
    assert one(guards, pid, "b", caps=caps, now_ms=T0 + HOUR).status == "sent"
    assert sr(one(guards, pid, "c", caps=caps, now_ms=T0 + 2 * HOUR)) == ("capped", "cap:profile:sms:2/1d")
    assert one(guards, pid, "d", caps=caps, now_ms=T0 + DAY_MS - 1).status == "capped"
    assert one(guards, pid, "e", caps=caps, now_ms=T0 + DAY_MS).status == "sent"  # "a" is a day old
    assert client.zrange(key, 0, -1, withscores=True) == [("b", T0 + HOUR), ("e", T0 + DAY_MS)]
    assert one(guards, pid, "f", caps=caps, now_ms=T0 + DAY_MS + HOUR - 1).status == "capped"
    assert one(guards, pid, "g", caps=caps, now_ms=T0 + DAY_MS + HOUR).status == "sent"
    assert client.zrange(key, 0, -1) == ["e", "g"]


def test_two_windows_on_one_set_each_count_their_own_span(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    """1 per hour and 3 per day on the same set: the hourly check must not trim the day."""
    caps = (Cap("profile", "sms", 1, HOUR), Cap("profile", "sms", 3, DAY_MS))
    times = [0, 30, 61, 122, 183, 250]  # minutes after T0
    got = [sr(one(guards, pid, caps=caps, now_ms=T0 + m * 60_000)) for m in times]
    assert got == [
        ("sent", "ok"),
        ("capped", "cap:profile:sms:1/1h"),
        ("sent", "ok"),
        ("sent", "ok"),
        ("capped", "cap:profile:sms:3/1d"),
        ("capped", "cap:profile:sms:3/1d"),
    ]
    assert client.zcard(cap_key(pid, "profile", "sms")) == 3


def test_cap_scopes_and_channels(guards: Guards, client: redis.Redis, pid: str) -> None:
    caps = (
        Cap("profile", None, 3, DAY_MS),  # all channels, all journeys
        Cap("profile", "sms", 1, DAY_MS),  # applies to sms actions only
        Cap("journey", None, 2, DAY_MS),  # per journey
    )
    assert one(guards, pid, "a", caps=caps, channel="sms").status == "sent"
    assert sr(one(guards, pid, "b", caps=caps, channel="sms")) == ("capped", "cap:profile:sms:1/1d")
    assert one(guards, pid, "c", caps=caps, channel="email").status == "sent"
    assert sr(one(guards, pid, "d", caps=caps, channel="push")) == ("capped", "cap:journey:*:2/1d")
    assert one(guards, pid, "e", caps=caps, channel="push", journey_id="j2").status == "sent"
    assert sr(one(guards, pid, "f", caps=caps, channel="push", journey_id="j3")) == (
        "capped",
        "cap:profile:*:3/1d",
    )
    assert client.zrange(cap_key(pid, "profile", None), 0, -1) == ["a", "c", "e"]
    assert client.zrange(cap_key(pid, "profile", "sms"), 0, -1) == ["a"]
    assert client.zrange(cap_key(pid, "journey", None, "j1"), 0, -1) == ["a", "c"]
    assert client.zrange(cap_key(pid, "journey", None, "j2"), 0, -1) == ["e"]


def test_priority_reserve_keeps_the_last_slots_for_important_journeys(guards: Guards, pid: str) -> None:
    caps = (Cap("profile", "sms", 3, DAY_MS, reserve=1, reserve_priority=80),)
    low = {"caps": caps, "priority": 10, "journey_id": "promo"}
    high = {"caps": caps, "priority": 90, "journey_id": "billing"}
    assert one(guards, pid, **low).status == "sent"
    assert one(guards, pid, **low).status == "sent"
    assert sr(one(guards, pid, **low)) == ("capped", "cap:profile:sms:3/1d:reserved")
    assert one(guards, pid, **{**low, "priority": 80}).status == "sent"  # priority >= reserve_priority
    assert sr(one(guards, pid, **high)) == ("capped", "cap:profile:sms:3/1d")


# --- replay and batches -----------------------------------------------------------------------


def test_replay_returns_the_same_decisions_and_counts_once(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    p2 = pid + "-b"
    caps = (DAY_SMS,)
    reqs = [
        request(pid, "a1", caps=caps),
        request(p2, "b1", caps=caps, holdout=True),
        request(pid, "a2", caps=caps, now_ms=T0 + 1),
        request(p2, "b2", caps=caps, channel="email"),
    ]
    first = guards.decide(reqs)
    assert [(d.action_id, d.status, d.replay) for d in first] == [
        ("a1", "sent", False),
        ("b1", "holdout", False),
        ("a2", "capped", False),
        ("b2", "sent", False),
    ]
    unsubscribe(client, pid, None)  # whatever changed meanwhile, a decision stands
    again = guards.decide(reqs)
    assert [(d.action_id, d.status, d.reason) for d in again] == [
        (d.action_id, d.status, d.reason) for d in first
    ]
    assert all(d.replay for d in again)
    assert client.zrange(cap_key(pid, "profile", "sms"), 0, -1) == ["a1"]
    assert client.exists(cap_key(p2, "profile", "sms")) == 0


def test_a_replayed_send_is_unacked_until_its_delivery_is_marked(
    guards: Guards, client: redis.Redis, pid: str
) -> None:
    """The engine died between deciding a send and the actions topic's ack: its replay says
    so (deliver again); once the ack is recorded, a replay delivers nothing. Refusals and
    holdouts are never delivered, so never unacked."""
    caps = (Cap("profile", "sms", 1, DAY_MS),)
    reqs = [
        request(pid, "s1", caps=caps),
        request(pid, "s2", caps=caps, now_ms=T0 + 1),  # capped
        request(pid, "h1", holdout=True, channel="email"),
    ]
    first = guards.decide(reqs)
    assert [(d.status, d.replay, d.unacked) for d in first] == [
        ("sent", False, False),
        ("capped", False, False),
        ("holdout", False, False),
    ]
    ttl = client.pttl(decision_key(pid, "s1"))
    crashed = guards.decide(reqs)
    assert [(d.status, d.reason, d.replay, d.unacked) for d in crashed] == [
        ("sent", "ok", True, True),
        ("capped", "cap:profile:sms:1/1d", True, False),
        ("holdout", "holdout", True, False),
    ]
    mark_delivered(client, [(pid, "s1"), (pid, "never-decided")], FAST)
    assert client.get(decision_key(pid, "s1")) == "sent|ok"
    assert client.exists(decision_key(pid, "never-decided")) == 0  # XX: no record is made up
    assert 0 < client.pttl(decision_key(pid, "s1")) <= ttl  # KEEPTTL
    acked = guards.decide(reqs)
    assert [(d.status, d.reason) for d in acked] == [(d.status, d.reason) for d in crashed]
    assert [(d.replay, d.unacked) for d in acked] == [(True, False)] * 3
    assert client.zrange(cap_key(pid, "profile", "sms"), 0, -1) == ["s1"]  # counted once throughout

    # A record written before the marks existed has no suffix: it counts as delivered,
    # so an upgrade does not re-send a month of decisions.
    client.set(decision_key(pid, "old"), "sent|ok", px=DAY_MS)
    old = guards.decide([request(pid, "old")])[0]
    assert (old.status, old.reason, old.replay, old.unacked) == ("sent", "ok", True, False)


def test_a_batch_sees_its_own_effects_in_order(guards: Guards, client: redis.Redis, pid: str) -> None:
    p2 = pid + "-b"
    caps = (Cap("profile", "sms", 3, DAY_MS),)
    reqs = []
    for i in range(5):
        reqs.append(request(pid, f"a{i}", caps=caps, template=f"t{i}", now_ms=T0 + i))
        reqs.append(request(p2, f"b{i}", caps=caps, dedupe_window_ms=DAY_MS, now_ms=T0 + i))
    reqs.append(request(pid, "a0", caps=caps))  # the same action again in the same batch
    got = guards.decide(reqs)
    assert [d.action_id for d in got] == [r.action_id for r in reqs]
    assert [d.status for d in got if d.action_id.startswith("a")] == [
        "sent",
        "sent",
        "sent",
        "capped",
        "capped",
        "sent",
    ]
    assert got[-1].replay and not got[0].replay
    assert not got[-1].unacked  # the repeat within one call is the same delivery, not a second one
    assert [d.status for d in got if d.action_id.startswith("b")] == ["sent"] + ["deduped"] * 4
    assert client.zrange(cap_key(pid, "profile", "sms"), 0, -1) == ["a0", "a1", "a2"]


# --- failures ---------------------------------------------------------------------------------


def test_script_cache_flushed_is_reloaded(
    guards: Guards, client: redis.Redis, pid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.script_flush()
    assert one(guards, pid).status == "sent"  # the pipeline loads it
    # NOSCRIPT while the pipeline runs (a flush between its check and its run, a Cluster
    # node that never saw the script): loaded and run again
    monkeypatch.setattr(redis.client.Pipeline, "load_scripts", lambda self: None)
    client.script_flush()
    assert one(guards, pid).status == "sent"


def test_a_lost_reply_is_retried_and_replayed_never_counted_twice(
    guards: Guards, client: redis.Redis, pid: str, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    real = redis.client.Pipeline.execute
    calls = []

    def lose_first_reply(self, raise_on_error: bool = True):
        result = real(self, raise_on_error)
        calls.append(1)
        if len(calls) == 1:
            raise redis.ConnectionError("connection reset while reading the reply")
        return result

    monkeypatch.setattr(redis.client.Pipeline, "execute", lose_first_reply)
    caps = (Cap("profile", "sms", 2, DAY_MS),)
    with caplog.at_level(logging.WARNING, logger="scrm.retry"):
        got = guards.decide([request(pid, "a1", caps=caps), request(pid, "a2", caps=caps)])
    # the lost reply's sends were never delivered: unacked, so the caller delivers them
    assert [(d.status, d.replay, d.unacked) for d in got] == [("sent", True, True), ("sent", True, True)]
    assert client.zcard(cap_key(pid, "profile", "sms")) == 2
    assert "failed (attempt 1," in caplog.text


def test_redis_unreachable_raises_sink_error_after_retries(pid: str, caplog) -> None:
    g = Guards.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5, retry=FAST)
    with caplog.at_level(logging.WARNING, logger="scrm.retry"), pytest.raises(SinkError, match="3 attempts"):
        g.decide([request(pid)])
    assert caplog.text.count("retrying in") == 2
    g.close()


def test_a_server_that_never_answers_times_out(pid: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        g = Guards.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=0.2, retry=RetryPolicy(2, 0.01, 0.01))
        started = time.monotonic()
        with pytest.raises(SinkError, match=r"Timeout|timed out"):
            g.decide([request(pid)])
        assert time.monotonic() - started < 3
        g.close()


def test_a_client_without_timeout_is_refused(valkey: str) -> None:
    with pytest.raises(ValueError, match="socket_timeout"):
        Guards(redis.Redis.from_url(valkey))


# --- Redis Cluster -----------------------------------------------------------------------------


def test_on_redis_cluster_one_call_per_profile_on_its_shard(valkey_cluster: str) -> None:
    from redis.cluster import RedisCluster

    g = Guards.from_url(valkey_cluster, timeout_s=5, retry=FAST)  # redis+cluster://: a Cluster client
    assert isinstance(g.client, RedisCluster)
    node_url = valkey_cluster.replace("+cluster", "", 1)
    rc = RedisCluster.from_url(node_url, socket_timeout=5, decode_responses=True)
    try:
        pids = [f"k-{uuid.uuid4().hex[:8]}-{i}" for i in range(4)]
        set_consent(rc, pids[1], "sms", False)
        caps = (Cap("profile", "sms", 1, DAY_MS),)
        reqs = [request(p, f"{p}-{n}", caps=caps, dedupe_window_ms=HOUR) for n in range(2) for p in pids]
        got = [sr(d) for d in g.decide(reqs)]
        assert got == [
            ("sent", "ok"),
            ("no_consent", "consent:sms"),
            ("sent", "ok"),
            ("sent", "ok"),
            ("deduped", "dedupe:t1:1h"),
            ("no_consent", "consent:sms"),
            ("deduped", "dedupe:t1:1h"),
            ("deduped", "dedupe:t1:1h"),
        ]
        rc.script_flush()
        again = g.decide(reqs)
        assert [sr(d) for d in again] == got and all(d.replay for d in again)
        assert [rc.zcard(cap_key(p, "profile", "sms")) for p in pids] == [1, 0, 1, 1]
    finally:
        rc.close()
        g.close()


# --- concurrency ------------------------------------------------------------------------------

CAP = 3
PROFILES = 5


def naive_decide(client: redis.Redis, r: ActionRequest, pause_s: float = 0.002) -> Decision:
    """What the guards must NOT be: read the count, then write (a race between the two)."""
    keys = [cap_key(r.profile_id, c.scope, c.channel, r.journey_id) for c in r.caps]
    used = [client.zcount(k, f"({r.now_ms - c.window_ms}", "+inf") for k, c in zip(keys, r.caps, strict=True)]
    time.sleep(pause_s)
    for n, c in zip(used, r.caps, strict=True):
        if n >= c.count:
            return Decision(r.action_id, "capped", f"cap:{c.label}")
    for k in keys:
        client.zadd(k, {r.action_id: r.now_ms})
    return Decision(r.action_id, "sent", "ok")


def hammer(
    url: str,
    mode: str,
    tag: str,
    prefix: str,
    profiles: int,
    cap: int,
    actions: int,
    sent: list[str],
    lock: threading.Lock,
    go_key: str | None = None,
    barrier: threading.Barrier | None = None,
    spans: list[tuple[float, float]] | None = None,
) -> None:
    """Decide `actions` small batches of distinct actions for random profiles of `prefix`;
    the ids sent go to `sent`, the wall-clock span of the decisions to `spans`."""
    caps = (Cap("profile", "sms", cap, DAY_MS),)
    rng = random.Random(tag)
    guards = Guards.from_url(url, timeout_s=10, retry=FAST) if mode == "lua" else None
    client = redis.Redis.from_url(url, socket_timeout=10)
    mine: list[str] = []
    try:
        if barrier is not None:
            barrier.wait()
        if go_key is not None:  # rendezvous across processes: ready, then wait for "go"
            client.incr(f"{go_key}:ready")
            while not client.exists(go_key):
                time.sleep(0.0005)
        began = time.time()
        for k in range(actions):
            batch = [
                request(f"{prefix}{rng.randrange(profiles)}", f"{tag}-{k}-{j}", caps=caps, now_ms=T0 + k)
                for j in range(rng.randint(1, 3))
            ]
            decided = [naive_decide(client, r) for r in batch] if guards is None else guards.decide(batch)
            mine += [d.action_id for d in decided if d.status == "sent"]
        ended = time.time()
    finally:
        client.close()
        if guards is not None:
            guards.close()
    with lock:
        sent.extend(mine)
        if spans is not None:
            spans.append((began, ended))


def run_threads(url: str, mode: str, prefix: str, threads: int, actions: int) -> list[str]:
    sent: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)
    pool = [
        threading.Thread(
            target=hammer,
            args=(url, mode, f"{prefix}t{t}", prefix, PROFILES, CAP, actions, sent, lock),
            kwargs={"barrier": barrier},
        )
        for t in range(threads)
    ]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return sent


def members(client: redis.Redis, prefix: str) -> dict[str, set[str]]:
    return {
        f"{prefix}{p}": set(client.zrange(cap_key(f"{prefix}{p}", "profile", "sms"), 0, -1))
        for p in range(PROFILES)
    }


def test_sixteen_threads_never_exceed_the_cap(valkey: str, client: redis.Redis) -> None:
    prefix = f"c-{uuid.uuid4().hex[:8]}-"
    sent = run_threads(valkey, "lua", prefix, threads=16, actions=40)
    held = members(client, prefix)
    assert {p: len(m) for p, m in held.items()} == {p: CAP for p in held}
    assert sorted(sent) == sorted(a for m in held.values() for a in m)  # exactly CAP "sent" per profile


def test_the_race_is_visible_a_read_then_write_guard_exceeds_the_cap(
    valkey: str, client: redis.Redis
) -> None:
    """Proves the load above can see races: the same load breaks a non-atomic guard."""
    prefix = f"n-{uuid.uuid4().hex[:8]}-"
    sent = run_threads(valkey, "naive", prefix, threads=16, actions=8)
    held = members(client, prefix)
    assert len(sent) > PROFILES * CAP
    assert max(len(m) for m in held.values()) > CAP


@pytest.mark.parametrize("mode", ["lua", "naive"])
def test_two_processes_and_threads_hammering_the_same_profiles(
    valkey: str, client: redis.Redis, mode: str
) -> None:
    prefix = f"x{mode}-{uuid.uuid4().hex[:8]}-"
    actions = 40 if mode == "lua" else 8
    go_key = f"{prefix}go"
    argv = [str(actions), go_key, mode]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), valkey, str(seed), prefix, str(PROFILES), str(CAP), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    sent: list[str] = []
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    local = [
        threading.Thread(
            target=hammer,
            args=(valkey, mode, f"{prefix}m{t}", prefix, PROFILES, CAP, actions, sent, lock),
            kwargs={"go_key": go_key, "spans": spans},
        )
        for t in range(4)
    ]
    for th in local:
        th.start()
    threads = len(local) + len(workers) * THREADS_PER_WORKER
    deadline = time.monotonic() + 30
    while int(client.get(f"{go_key}:ready") or 0) < threads:
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "workers not ready"
        time.sleep(0.005)
    client.set(go_key, 1, px=60_000)
    for th in local:
        th.join()
    process_spans = [(min(b for b, _ in spans), max(e for _, e in spans))]
    for w in workers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        result = json.loads(out)
        sent += result["sent"]
        process_spans.append((min(b for b, _ in result["spans"]), max(e for _, e in result["spans"])))
    # the three processes really decided at the same time
    assert max(b for b, _ in process_spans) < min(e for _, e in process_spans), process_spans
    held = members(client, prefix)
    if mode == "lua":
        assert {p: len(m) for p, m in held.items()} == {p: CAP for p in held}
        assert sorted(sent) == sorted(a for m in held.values() for a in m)
    else:
        assert max(len(m) for m in held.values()) > CAP
