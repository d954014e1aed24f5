"""The complaint breaker against a real Valkey: complaints over the threshold pause the
journey (engines follow), `resume` undoes it; below the threshold nothing happens."""

from __future__ import annotations

import uuid

import redis

from flows.core.messages import Intent
from flows.core.resources import config_dir
from flows.core.settings import JourneySettings
from rules import store
from rules.actions import GuardStep
from rules.journeys.load import load_journey
from rules.journeys.model import Journey
from sinks.retry import RetryPolicy

T0 = 1_790_000_000_000


def cart_journey(url: str, flush: bool = True) -> tuple[redis.Redis, Journey, store.JourneyCatalog]:
    """The database at `url` (emptied first) holding the shipped cart-abandoned journey
    (one push a day), and a catalog of it, refreshed."""
    client = redis.Redis.from_url(url)
    if flush:
        client.flushdb()
    j = load_journey(config_dir() / "journeys" / "cart_abandoned.yaml")
    store.load(client, [j])
    catalog = store.JourneyCatalog(client)
    catalog.refresh()
    return client, j, catalog


def intent(kind: str, pid: str, jid: str, ts: int, n: int) -> Intent:
    send = kind == "send"
    node, channel = ("remind", "push") if send else ("", "")
    return Intent(
        kind, f"{kind}-{pid}-{n}", pid, jid, 1, node, channel, "cart_reminder", "a", 5, f"e{n}", ts, ts, {}
    )


def test_complaints_over_the_threshold_pause_the_journey(valkey) -> None:
    url = valkey.rsplit("/", 1)[0] + "/7"
    client, j, catalog = cart_journey(url)
    settings = JourneySettings(breaker={"max_complaint_rate": 0.2, "window": "1d", "min_sends": 5}, caps=())
    step = GuardStep(url, 2.0, RetryPolicy(3, 0.01, 0.05), settings, catalog)
    tag = uuid.uuid4().hex[:6]
    pids = [f"{tag}-{i}" for i in range(10)]
    records = step([intent("send", p, j.id, T0 + i, i) for i, p in enumerate(pids)])
    assert [r.status for r in records] == ["sent"] * 10

    # 2 complaints on 10 sends = 20 %: not over the threshold
    assert step([intent("complaint", p, j.id, T0 + 100, 90 + i) for i, p in enumerate(pids[:2])]) == []
    assert store.index(client)[j.id].state == "enabled"
    # a third: 30 % > 20 %: paused, recorded, engines follow
    tripped = step([intent("complaint", pids[2], j.id, T0 + 200, 99)])
    assert [(r.status, r.reason, r.journey_id) for r in tripped] == [
        ("breaker_tripped", "complaints:3/10", j.id)
    ]
    assert store.index(client)[j.id].state == "paused"
    catalog.refresh()
    assert catalog.current[j.id].state == "paused"
    # resumed with the CLI's call; a complaint on an already paused journey trips nothing again
    store.set_state(client, j.id, "enabled")
    assert step([intent("complaint", pids[3], j.id, T0 + 300, 98)])[0].status == "breaker_tripped"
    store.set_state(client, j.id, "paused")
    assert step([intent("complaint", pids[4], j.id, T0 + 400, 97)]) == []


def test_consent_events_reach_the_guards_in_stream_order(valkey) -> None:
    url = valkey.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(url, decode_responses=True)
    j = load_journey(config_dir() / "journeys" / "cart_abandoned.yaml")
    store.load(client, [j])
    catalog = store.JourneyCatalog(client)
    catalog.refresh()
    step = GuardStep(url, 2.0, RetryPolicy(3, 0.01, 0.05), JourneySettings(caps=()), catalog)
    pid = uuid.uuid4().hex[:8]
    apart = 2 * 86_400_000  # the journey's own caps count per day: events this far apart

    def consent(kind: str, ts: int, n: int, channel: str = "push", **detail: str) -> Intent:
        return Intent("consent", f"c{n}", pid, "", 0, "", channel, kind, "", 0, f"e{n}", ts, ts, detail)

    def suppress(ts: int, n: int) -> Intent:
        return Intent("suppress", f"s{n}", pid, "", 0, "", "push", "unsubscribe", "", 0, f"e{n}", ts, ts, {})

    def send(ts: int, n: int) -> Intent:
        # a template of its own each time: no send is deduplicated
        return Intent("send", f"a{n}", pid, j.id, 1, "remind", "push", f"t{n}", "a", 5, f"e{n}", ts, ts, {})

    got = step(
        [
            suppress(T0, 1),
            send(T0 + 1 * apart, 2),
            consent("consent_granted", T0 + 2 * apart, 3, version="v1"),
            send(T0 + 3 * apart, 4),
        ]
    )
    assert [(r.action_id, r.status) for r in got] == [("a2", "suppressed"), ("a4", "sent")]
    assert client.hget(f"scrm:consent:{{{pid}}}", "push:at") == f"{T0 + 2 * apart}|v1|e3"
    # a grant naming a channel nobody knows grants nothing; a refusal of every channel holds
    got = step(
        [consent("consent_granted", T0 + 4 * apart, 5, channel="", unknown="fax"), send(T0 + 5 * apart, 6)]
    )
    assert [r.status for r in got] == ["sent"] and client.hget(f"scrm:consent:{{{pid}}}", "*") is None
    got = step([consent("consent_revoked", T0 + 6 * apart, 7, channel=""), send(T0 + 7 * apart, 8)])
    assert [(r.status, r.reason) for r in got] == [("no_consent", "consent:*")]
