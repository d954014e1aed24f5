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
from sinks.retry import RetryPolicy

T0 = 1_790_000_000_000


def intent(kind: str, pid: str, jid: str, ts: int, n: int) -> Intent:
    send = kind == "send"
    node, channel = ("remind", "push") if send else ("", "")
    return Intent(
        kind, f"{kind}-{pid}-{n}", pid, jid, 1, node, channel, "cart_reminder", "a", 5, f"e{n}", ts, ts, {}
    )


def test_complaints_over_the_threshold_pause_the_journey(valkey) -> None:
    url = valkey.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    j = load_journey(config_dir() / "journeys" / "cart_abandoned.yaml")
    store.load(client, [j])
    catalog = store.JourneyCatalog(client)
    catalog.refresh()
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
