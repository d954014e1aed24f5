"""Journeys end to end through the real broker, Valkey and chDB: triggers fire in event
time, every decision lands in ClickHouse with its reason, fired actions reach the actions
topic once, a replay of the same events sends nothing twice, and a replay after the
engine died between a decision and its ack sends exactly the unacknowledged one again."""

from __future__ import annotations

import io

import orjson
import redis
from rich.console import Console

from flows.app import engine
from rules.policy import decision_key

HOUR = 3_600_000
MIN = 60_000
T0 = 1_790_000_000_000 - (1_790_000_000_000 % (24 * HOUR)) + 12 * HOUR  # 12:00 UTC: no quiet hours in UTC


def ev(pid: str, etype: str, ts: int, eid: str, **props: object) -> bytes:
    return orjson.dumps({"eventId": eid, "profileId": pid, "type": etype, "ts": ts, "props": props})


def test_triggers_guards_actions_and_replay(broker, engine_settings, ch, names) -> None:
    tag = names["tag"]
    a, b, c, d = f"{tag}-a", f"{tag}-b", f"{tag}-c", f"{tag}-d"
    actions_topic = f"act_{tag}"
    settings = engine_settings(
        {"source": {"kind": "kafka"}, "kafka": {"actions_topic": actions_topic}, "models": {"enabled": False}}
    )
    events = [
        ev(a, "signup", T0, f"{a}-1", timezone="UTC"),  # warm-up: wait 1 h, sms welcome, email guide
        ev(b, "add_to_cart", T0, f"{b}-1", sku="S1"),  # cart paid in time: nothing
        ev(b, "order_paid", T0 + 10 * MIN, f"{b}-2", amount=10.0),
        ev(c, "add_to_cart", T0 + 5 * MIN, f"{c}-1", sku="S2", timezone="UTC"),  # abandoned: fires at +30 min
        ev(d, "unsubscribe", T0 - MIN, f"{d}-1", channel="sms"),  # suppression from the stream
        ev(d, "signup", T0, f"{d}-2"),
        ev(a, "page_view", T0 + 3 * HOUR, f"{a}-2"),  # moves stream time on
    ]
    broker.create_topic(names["events"], partitions=2)
    broker.produce(names["events"], [(orjson.loads(e)["profileId"].encode(), e) for e in events])
    engine.run(settings, Console(file=io.StringIO()))

    db = names["database"]
    rows = ch.query(
        f"SELECT profile_id, journey_id, node_id, channel, template, status, reason, variant, ts, action_id "
        f"FROM {db}.actions FINAL ORDER BY profile_id, ts, node_id"
    ).result_rows
    got = [(r[0], r[1], r[2], r[5]) for r in rows]
    assert (a, "new_user_warmup", "welcome", "sent") in got
    assert (a, "new_user_warmup", "guide", "sent") in got  # not high_value: the else branch
    assert not [r for r in rows if r[0] == b]  # paid within 30 min: never fires
    assert [(r[2], r[5], r[6]) for r in rows if r[0] == d] == [
        ("guide", "sent", "ok"),
        ("welcome", "suppressed", "suppressed:sms"),
    ]
    cart = [r for r in rows if r[0] == c]
    assert len(cart) == 1 and cart[0][1] == "cart_abandoned"
    assert cart[0][5] in ("sent", "holdout") and cart[0][7]  # an A/B arm was recorded
    welcome = next(r for r in rows if r[2] == "welcome")
    assert welcome[8].timestamp() * 1000 == T0 + HOUR  # fired when the wait ended, in event time
    delivered = {r[9] for r in rows if r[5] in ("sent", "task", "ticket")}

    msgs = broker.consume_all(actions_topic)
    assert {orjson.loads(m.value())["actionId"] for m in msgs} == delivered
    assert all(m.key() == orjson.loads(m.value())["profileId"].encode() for m in msgs)

    # the same events again (a replay after a crash): same ids, nothing sent twice
    engine.run(settings, Console(file=io.StringIO()))
    again = ch.query(f"SELECT action_id, status FROM {db}.actions FINAL ORDER BY action_id").result_rows
    assert sorted((r[9], r[5]) for r in rows) == again
    assert len(broker.consume_all(actions_topic)) == len(msgs)

    # The engine died after the guards recorded a send but before the topic acknowledged it:
    # its decision record has no ack. A replay delivers that one again, and only that one.
    rk = redis.Redis.from_url(settings.redis.url)
    key = decision_key(a, welcome[9])
    assert rk.get(key) == b"sent|ok"  # acknowledged: no longer pending
    rk.set(key, "sent|ok|pending", xx=True, keepttl=True)
    engine.run(settings, Console(file=io.StringIO()))
    ids = [orjson.loads(m.value())["actionId"] for m in broker.consume_all(actions_topic)]
    assert len(ids) == len(msgs) + 1 and ids.count(welcome[9]) == 2
    assert rk.get(key) == b"sent|ok"
    final = ch.query(f"SELECT action_id, status FROM {db}.actions FINAL ORDER BY action_id").result_rows
    assert final == again
