"""Quiet hours across timezones and the complaint breaker, through the real broker,
Valkey and chDB (a replay: event time, not the wall clock, decides)."""

from __future__ import annotations

import io

import orjson
import pytest
import redis
from rich.console import Console

from flows.app import engine
from rules import store
from rules.policy import decision_key
from sinks.feature_store import feature_key
from sinks.redis_store import connect

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_790_000_000_000 - (1_790_000_000_000 % DAY) + 15 * HOUR  # 15:00 UTC: 23:00 Shanghai, 17:00 Berlin

QUIET = """
id: quiet_promo
name: Promo with quiet hours
priority: 10
entry: {policy: once}
quiet_hours: {start: "21:00", end: "08:00", action: defer}
trigger:
  event: {type: product_view}
nodes:
  - {id: promo, type: send, channel: push, template: promo}
"""

NOISY = """
id: noisy
name: Sends on every search
priority: 10
entry: {policy: every_time}
max_active: 10
trigger:
  event: {type: search}
nodes:
  - {id: ping, type: send, channel: email, template: ping}
"""


def ev(pid: str, etype: str, ts: int, eid: str, **props: object) -> tuple[bytes, bytes]:
    return pid.encode(), orjson.dumps(
        {"eventId": eid, "profileId": pid, "type": etype, "ts": ts, "props": props}
    )


@pytest.mark.parametrize("server", ["valkey", "valkey_cluster"])
def test_quiet_hours_by_timezone_and_the_breaker(
    server, request, broker, engine_settings, ch, names, tmp_path
) -> None:
    """On one Valkey, and on a Valkey Cluster (``redis+cluster://``): every Redis part of
    the engine — the journey catalog and its hot reload, the guards' script, the breaker's
    counters and its pause, the feature and score stores — works unchanged there."""
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "quiet.yaml").write_text(QUIET)
    (folder / "noisy.yaml").write_text(NOISY)
    if server == "valkey":
        db_url = request.getfixturevalue("valkey").rsplit("/", 1)[0] + "/8"
        redis.Redis.from_url(db_url).flushdb()
    else:
        db_url = request.getfixturevalue("valkey_cluster")  # one Cluster per session: db 0 only
    client = connect(db_url, 5)
    settings = engine_settings(
        {
            "source": {"kind": "kafka"},
            "redis": {"url": db_url},
            "models": {"enabled": False},
            "journeys": {
                "dir": str(folder),
                "caps": [],
                "dedupe_window_s": 0,
                "breaker": {"max_complaint_rate": 0.3, "window": "1d", "min_sends": 4},
            },
        }
    )
    tag = names["tag"]
    sh, be = f"{tag}-sh", f"{tag}-be"
    noisy = [f"{tag}-n{i}" for i in range(5)]
    msgs = [
        ev(sh, "signup", T0 - HOUR, f"{sh}-0", timezone="Asia/Shanghai"),
        ev(be, "signup", T0 - HOUR, f"{be}-0", timezone="Europe/Berlin"),
        ev(sh, "product_view", T0, f"{sh}-1"),  # 23:00 local: deferred to 08:00
        ev(be, "product_view", T0, f"{be}-1"),  # 17:00 local: sent at once
        *[ev(p, "search", T0 + i * 1000, f"{p}-s") for i, p in enumerate(noisy)],  # 5 pings sent
        *[ev(p, "complaint", T0 + HOUR + i, f"{p}-c", template="ping") for i, p in enumerate(noisy[:2])],
        ev(f"{tag}-late", "page_view", T0 + 12 * HOUR, f"{tag}-z"),  # stream time passes 08:00 Shanghai
    ]
    # One partition: the breaker's count depends on whether the fifth send is guarded
    # before the first complaint, which two partitions read in either order.
    broker.create_topic(names["events"], partitions=1)
    broker.produce(names["events"], msgs)
    engine.run(settings, Console(file=io.StringIO()))

    rows = ch.query(
        f"SELECT profile_id, journey_id, status, reason, toUnixTimestamp64Milli(ts) "
        f"FROM {names['database']}.actions FINAL ORDER BY profile_id, ts, status"
    ).result_rows
    ids = ch.query(
        f"SELECT profile_id, action_id, status FROM {names['database']}.actions FINAL WHERE action_id != ''"
    ).result_rows
    quiet = [(r[0], r[2], r[4]) for r in rows if r[1] == "quiet_promo"]
    assert quiet == [
        (be, "sent", T0),
        (sh, "quiet_hours_deferred", T0),
        (sh, "sent", T0 - 15 * HOUR + DAY),  # 08:00 in Shanghai = 00:00 UTC the next day
    ]
    noisy_rows = [(r[2], r[3]) for r in rows if r[1] == "noisy"]
    assert noisy_rows.count(("sent", "ok")) == 5
    assert ("breaker_tripped", "complaints:2/5") in noisy_rows  # 40 % > 30 % on 5 sends
    assert store.index(client)["noisy"].state == "paused"
    assert store.index(client)["quiet_promo"].state == "enabled"
    for pid in (sh, be, *noisy):  # the online feature store wrote every profile
        assert client.hget(feature_key(pid), "as_of") is not None, pid
    # every send's decision record was marked delivered once the actions topic acked it
    sent = [(pid, aid) for pid, aid, status in ids if status == "sent"]
    assert len(sent) == 7
    assert [client.get(decision_key(pid, aid)) for pid, aid in sent] == [b"sent|ok"] * 7
    client.close()
