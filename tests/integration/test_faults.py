"""Crash and restart with real processes: `scrm run` killed with SIGKILL under load, six
times at random points, against the real broker, Valkey and chDB, with recovery on.

Afterwards: every produced event is stored exactly once (`FINAL`); every decision has
one action id and one status; every decision the guards took in Redis is in ClickHouse
and the other way round (none lost); each profile's cap sets hold exactly its sent
actions (none counted twice); every fired action is on the actions topic; features
equal a recomputation from the raw events. Models are off: a learner restored from a
snapshot re-learns examples its published version already saw, and the journeys used
here do not depend on scores.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import redis

from flows.app.testing import EngineProcess
from flows.core.settings import load_settings
from flows.dataflow.build import feature_set
from rules.policy import cap_key
from sinks.feature_store import feature_key
from tests.integration.test_features import as_event
from tests.integration.test_processes import USER, query_json, scrm, scrm_env
from tests.unit.features.test_windows import diff, oracle

T0 = 1_790_000_000_000  # ms: event time well in the past, so only the events move the stream clock
MIN = 60_000
KILLS = 6
GUARDED = {"sent", "capped", "suppressed", "no_consent", "deduped", "holdout"}  # decided in Redis

THANKS = """
id: order_thanks
name: Thanks for every order
priority: 5
entry: {policy: every_time}
max_active: 20
trigger:
  event: {type: order_paid}
nodes:
  - {id: thanks, type: send, channel: push, template: thanks}
"""


def workload(tag: str, profiles: int, per_profile: int, seed: int, aliases: bool = False) -> list[dict]:
    """Customers who sign up, browse, fill carts and sometimes pay, in event-time order.

    With `aliases`, half the events after the signup come from the app or the
    mini-program without a profileId (only a deviceId or an openId), and a login halfway
    shows all three together: each customer is three persons, merged at the login. Those
    events keep the customer's id as `_key`, their Kafka key (one partition per customer)."""
    rng = random.Random(seed)
    events = []
    for p in range(profiles):
        pid = f"{tag}-p{p}"
        ts = T0 + rng.randrange(0, 60 * MIN)
        events.append({"eventId": f"{pid}-0", "profileId": pid, "type": "signup", "ts": ts, "props": {}})
        device, open_id = {"deviceId": f"d-{pid}"}, {"openId": f"o-{pid}"}
        for i in range(1, per_profile):
            ts += rng.randrange(0, 25 * MIN)
            etype = rng.choice(["page_view", "product_view", "add_to_cart", "add_to_cart", "order_paid",
                                "session_start", "message_opened"])  # fmt: skip
            props: dict[str, object] = {"channel": rng.choice(["app", "web"])}
            if etype == "order_paid":
                props["amount"] = round(rng.uniform(5, 900), 2)
            if etype in ("add_to_cart", "product_view"):
                props["price"] = round(rng.uniform(1, 90), 2)
                props["sku"] = f"SKU-{rng.randrange(12)}"
            e: dict = {"eventId": f"{pid}-{i}", "profileId": pid, "type": etype, "ts": ts, "props": props}
            if aliases and i == per_profile // 2:
                e.update(type="login", identifiers={**device, **open_id}, props={})
            elif aliases and rng.random() < 0.5:
                del e["profileId"]
                e["identifiers"] = rng.choice([device, open_id])
            events.append({**e, "_key": pid} if aliases else e)
    events.sort(key=lambda e: e["ts"])
    return events


def message(e: dict) -> tuple[bytes, bytes]:
    """A workload event as produced: keyed by its customer."""
    key = e.get("_key") or e["profileId"]
    return key.encode(), orjson.dumps({k: v for k, v in e.items() if k != "_key"})


def redis_url(valkey: str, db: int) -> str:
    url = valkey.rsplit("/", 1)[0] + f"/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


def by_profile(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in events:
        out.setdefault(e.get("_key") or e["profileId"], []).append(e)
    return out


def assert_features_exact(r: redis.Redis, fs, history: dict[str, list[dict]], tags: bool = False) -> None:
    """Every profile's hash in the online store equals the oracle's recomputation from its
    raw events, as of the hash's own ``as_of`` (RFM scores and segment left out: their
    quantiles are process-wide); with `tags`, the tags too."""
    for pid, evs in history.items():
        stored = {k.decode(): v.decode() for k, v in r.hgetall(feature_key(pid)).items()}
        as_of = int(stored.pop("as_of"))
        got_tags = set(filter(None, stored.pop("tags", "").split(",")))
        for k in ("segment", "rfm_r", "rfm_f", "rfm_m", "journeys"):
            stored.pop(k, None)
        values = {k: float(v) for k, v in stored.items()}
        expect = oracle(fs, [as_event(e) for e in evs], 3_600_000, as_of)
        assert not diff(fs, values, expect), (pid, diff(fs, values, expect))
        if tags:
            assert got_tags == {t.name for t in fs.tags if t.holds(expect)}, pid


def assert_guards_agree(
    r: redis.Redis,
    rows: list[tuple[str, str, str, str]],
    profiles: set[str],
    channels=(None,),
    merged_into: dict[str, str] | None = None,
) -> None:
    """`rows` are ClickHouse's decisions (action_id, profile_id, channel, status). Every
    decision the guards took in Redis is there with the same status and every guarded row
    was decided by the guards (none lost); each profile's cap sets (all channels, and each
    of `channels`) hold exactly its sent actions, and those of the persons `merged_into` it
    (none counted twice)."""
    records = {
        k.decode().rsplit(":", 1)[1]: r.get(k).decode()
        for k in r.scan_iter(match="scrm:decision:*", count=1000)
    }
    decided = {a: v.split("|", 1)[0] for a, v in records.items()}
    assert decided == {a: s for a, _, _, s in rows if s in GUARDED}
    pending = [a for a, v in records.items() if v.endswith("|pending")]
    assert pending == [], f"{len(pending)} sends never marked as acknowledged by the actions topic"
    sent: dict[tuple[str, str | None], set[str]] = {}
    for a, pid, channel, s in rows:
        if s == "sent":
            sent.setdefault((pid, None), set()).add(a)
            sent.setdefault((pid, channel), set()).add(a)
    losers: dict[str, list[str]] = {}
    for loser, winner in (merged_into or {}).items():
        losers.setdefault(winner, []).append(loser)
    for pid in profiles:
        for channel in channels:
            members = {m.decode() for m in r.zrange(cap_key(pid, "profile", channel), 0, -1)}
            want = set(sent.get((pid, channel), set()))
            for loser in losers.get(pid, ()):
                want |= sent.get((loser, channel), set())
            assert members == want, (pid, channel)


def test_kill_9_under_load_loses_nothing_and_decides_once(broker, names, tmp_path, valkey, request):
    """Six lives of the engine, each killed with SIGKILL at a random moment 0.3-2.5 s after
    it started reading (before, during or after one of its 0.5 s snapshots), every one
    while events are still arriving (~170/s, asserted); then a run to the end of the topic.
    Nothing lost, nothing twice, every decision taken once, and the same decisions as a
    clean run of the same input (which runs while the killed run's results are checked)."""
    kill_9_run(broker, names, tmp_path, valkey, request, persons=False)


def test_kill_9_while_persons_merge_routes_as_the_first_time(broker, names, tmp_path, valkey, request):
    """The same with routing by person, each customer three persons (app, mini-program,
    profileId) until a login merges them: every record stored once and routed to the same
    person as in a clean run (the graph is ahead of the snapshots after each kill), the
    identities the same, every decision taken once and the same, caps holding the sends of
    the merged persons once each, and the same features per person."""
    kill_9_run(broker, names, tmp_path, valkey, request, persons=True)


def kill_9_run(broker, names, tmp_path, valkey, request, persons: bool) -> None:
    tag = names["tag"]
    journeys = tmp_path / "journeys"
    shutil.copytree(Path(__file__).parents[2] / "config" / "journeys", journeys)
    (journeys / "order_thanks.yaml").write_text(THANKS)
    broker.create_topic(names["events"], partitions=2)
    events = workload(tag, profiles=200, per_profile=50, seed=11, aliases=persons)
    garbage = [(None, b"not json %d" % i) for i in range(15)]

    common = {
        "SCRM_MODELS__ENABLED": "false",
        "SCRM_JOURNEYS__DIR": str(journeys),
        "SCRM_FEATURES__SNAPSHOT_INTERVAL_S": "0",
        # T0 is evening in UTC, outside the journeys' quiet hours there: every send decides now
        "SCRM_JOURNEYS__DEFAULT_TIMEZONE": "UTC",
        "SCRM_IDENTITY__RESOLVE": "true" if persons else "false",
    }
    killed = scrm_env(
        broker,
        names,
        tmp_path / "killed",
        SCRM_REDIS__URL=redis_url(valkey, 11),
        SCRM_RECOVERY__DIR=str(tmp_path / "recovery"),
        SCRM_RECOVERY__SNAPSHOT_INTERVAL_S="0.5",
        SCRM_KAFKA__STOP_AT_END="false",
        SCRM_KAFKA__ACTIONS_TOPIC=f"act_k_{tag}",
        **common,
    )
    res = scrm("recovery", "init", env=killed)
    assert res.returncode == 0, res.stdout + res.stderr

    # Events keep arriving (~170/s) while the engine is killed at a random moment after
    # each start and started again; once the kills are over, the rest arrives at once.
    chunks = [events[i : i + 100] for i in range(0, len(events), 100)]
    kills_done = threading.Event()
    sent = [0]  # chunks delivered so far

    def produce() -> None:
        for n, chunk in enumerate(chunks):
            msgs = [message(e) for e in chunk]
            if n == 7:
                msgs += garbage
            broker.produce(names["events"], msgs)
            sent[0] = n + 1
            kills_done.wait(0.6)  # paced while the engine is being killed

    producer = threading.Thread(target=produce)
    producer.start()
    rng = random.Random(5)
    consumed_at_kill = []
    sent_at_kill = []
    try:
        for _ in range(KILLS):
            engine = EngineProcess(killed)
            try:
                engine.wait_running()
                time.sleep(rng.uniform(0.3, 2.5))
                consumed_at_kill.append(engine.records_in)
                sent_at_kill.append(sent[0])
            finally:
                engine.kill()
    finally:
        kills_done.set()
        producer.join()
    mid_stream = sum(1 for n in consumed_at_kill if n > 0)
    assert mid_stream >= KILLS // 2, f"killed while consuming only {mid_stream} times: {consumed_at_kill}"
    assert sent_at_kill[-1] < len(chunks), f"a kill after the input ended: chunks sent {sent_at_kill}"

    final = scrm("run", "--source", "kafka", env={**killed, "SCRM_KAFKA__STOP_AT_END": "true"}, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr

    # The same input read once, cleanly: started now, compared at the end.
    clean_env = scrm_env(
        broker,
        names,
        tmp_path / "clean",
        SCRM_REDIS__URL=redis_url(valkey, 15),
        SCRM_KAFKA__ACTIONS_TOPIC=f"act_c_{tag}",
        SCRM_KAFKA__DLQ_TOPIC=f"dlq_c_{tag}",
        **common,
    )
    clean_log = tmp_path / "clean.log"
    with clean_log.open("w") as log:
        clean = subprocess.Popen(
            [sys.executable, "-m", "flows.app.cli", "run", "--source", "kafka"],
            env=clean_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop_clean() -> None:  # when a check below fails first
        if clean.poll() is None:
            clean.kill()
            clean.wait()

    request.addfinalizer(stop_clean)

    db = names["database"]
    want_ids = {e["eventId"] for e in events}

    # Every event exactly once (FINAL), whatever the crashes replayed; garbage dead-lettered once.
    ids = [r["event_id"] for r in query_json(f"SELECT event_id FROM {db}.events FINAL {USER}", killed)]
    assert len(ids) == len(set(ids)) and set(ids) == want_ids
    assert query_json(f"SELECT count() AS n FROM {db}.dead_letters FINAL", killed)[0]["n"] == len(garbage)
    raw = query_json(f"SELECT count() AS n FROM {db}.events {USER}", killed)[0]["n"]
    print(f"killed at records_in={consumed_at_kill}; {raw} rows before FINAL for {len(want_ids)} events")

    # One id per decision, one status per id.
    rows = query_json(
        f"SELECT action_id, profile_id, channel, status FROM {db}.actions FINAL WHERE action_id != ''", killed
    )
    status = {r["action_id"]: r["status"] for r in rows}
    assert len(status) == len(rows), "an action id with two statuses"
    assert Counter(status.values())["sent"] > 100 and "capped" in status.values(), Counter(status.values())
    twice = query_json(
        f"SELECT journey_id, node_id, profile_id, trigger_event_id, uniqExact(action_id) AS ids "
        f"FROM {db}.actions FINAL WHERE action_id != '' "
        "GROUP BY journey_id, node_id, profile_id, trigger_event_id HAVING ids > 1",
        killed,
    )
    assert twice == []

    # No decision lost, none without its guards, caps counted once per action.
    rk = redis.Redis.from_url(killed["SCRM_REDIS__URL"])
    decisions = [(r["action_id"], r["profile_id"], r["channel"], r["status"]) for r in rows]
    merged_into: dict[str, str] = {}
    if persons:  # each merged person's sends were folded into the person it merged into
        merged_into = {
            r["merged_id"]: r["person_id"] for r in query_json(f"SELECT * FROM {db}.person_now", killed)
        }
        assert len(merged_into) == anonymous_before_login(events), "the app and mini-program persons merged"
    profiles = {r["profile_id"] for r in rows} | set(merged_into.values())
    assert_guards_agree(rk, decisions, profiles, channels=(None, "sms"), merged_into=merged_into)

    # Every fired action is on the topic (at least once: senders deduplicate on action_id).
    fired = {a for a, s in status.items() if s in ("sent", "task", "ticket")}
    assert {orjson.loads(m.value())["actionId"] for m in broker.consume_all(f"act_k_{tag}")} == fired

    # Features in the online store equal a recomputation from the raw events (with routing
    # by person, every event of the person: a merge hands the loser's state to the winner).
    history = by_profile(events)
    if persons:
        sql = f"SELECT event_id, person_id FROM {db}.events FINAL {USER}"
        routed = {r["event_id"]: r["person_id"] for r in query_json(sql, killed)}
        history = {}
        for e in events:
            person = routed[e["eventId"]]
            while person in merged_into:
                person = merged_into[person]
            history.setdefault(person, []).append(e)
        assert len(history) == len({e.get("_key") or e["profileId"] for e in events}), "one person a customer"
    assert_features_exact(rk, feature_set(load_settings(env={})), history, tags=True)

    # The same input read once, cleanly, decides the same: crashes, catch-ups and how the
    # two partitions happened to be interleaved change no decision (stream time is kept
    # per partition, so a partition running ahead wakes no profile of the other).
    assert clean.wait(timeout=300) == 0, clean_log.read_text()
    clean_rows = query_json(
        f"SELECT action_id, status FROM {db}.actions FINAL WHERE action_id != ''", clean_env
    )
    clean_status = {r["action_id"]: r["status"] for r in clean_rows}
    only_killed = sorted(set(status.items()) - set(clean_status.items()))
    only_clean = sorted(set(clean_status.items()) - set(status.items()))
    print(f"{len(status)} decisions; differing from a clean run: {len(only_killed)} / {len(only_clean)}")
    if only_killed or only_clean:
        cols = "action_id, journey_id, node_id, profile_id, status, reason, toUnixTimestamp64Milli(ts) AS ts"
        differ = ", ".join(f"'{a}'" for a, _ in only_killed + only_clean)
        sql = f"SELECT {cols} FROM {db}.actions FINAL WHERE action_id IN ({differ}) ORDER BY profile_id, ts"
        for name, env in (("killed", killed), ("clean", clean_env)):
            for r in query_json(sql, env):
                print(name, r)
    if persons:
        # A merge does not move the loser's journey instances yet: an intent its timers emit
        # near the merge is decided under the loser or, once merged, for the person, as the
        # batches fell, and the person's next caps and dedupes see it or not. Only persons
        # in a merge differ, and few of their decisions.
        clean_rows = query_json(f"SELECT action_id, profile_id FROM {db}.actions FINAL", clean_env)
        where = {r["action_id"]: {r["profile_id"]} for r in rows}
        for r in clean_rows:
            where.setdefault(r["action_id"], set()).add(r["profile_id"])
        merging = set(merged_into) | set(merged_into.values())
        differ = {a for a, _ in only_killed + only_clean}
        assert all(where[a] <= merging for a in differ), sorted(differ)[:10]
        assert len(differ) < len(status) // 50, f"{len(differ)} of {len(status)} decisions differ"
    else:
        assert only_killed == [] and only_clean == [], (only_killed[:10], only_clean[:10])
    if persons:
        route = f"SELECT event_id, person_id FROM {db}.events FINAL {USER} ORDER BY event_id"
        assert query_json(route, killed) == query_json(route, clean_env)
        owners = f"SELECT identifier, argMax(person_id, seq) AS p FROM {db}.identities GROUP BY 1 ORDER BY 1"
        assert query_json(owners, killed) == query_json(owners, clean_env)


def anonymous_before_login(events: list[dict]) -> int:
    """How many persons the logins merge: each alias (a deviceId or an openId) seen on its
    own before its customer's login."""
    seen: set[tuple[str, str]] = set()
    logged_in: set[str] = set()
    for e in events:
        if e["type"] == "login":
            logged_in.add(e["_key"])
        elif "profileId" not in e and e["_key"] not in logged_in:
            seen.add((e["_key"], next(iter(e["identifiers"]))))
    return len(seen)


ABANDON = """
id: quick_abandon
name: Cart abandoned (12 s, for the test)
priority: 20
entry: {policy: every_time}
trigger:
  absence: {after: add_to_cart, missing: order_paid, within: 12s}
nodes:
  - {id: remind, type: send, channel: push, template: cart}
"""


def test_an_absence_window_open_at_a_crash_still_closes_after_restart(broker, names, tmp_path, valkey):
    """Live events; the engine is killed while a cart's 12 s window is open, and no event
    arrives after the restart: the restored stream clock keeps pace with the wall clock,
    so the reminder still fires, once, and the cart that was paid for gets nothing."""
    tag = names["tag"]
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "quick_abandon.yaml").write_text(ABANDON)
    broker.create_topic(names["events"], partitions=1)
    env = scrm_env(
        broker,
        names,
        tmp_path / "live",
        SCRM_REDIS__URL=redis_url(valkey, 13),
        SCRM_RECOVERY__DIR=str(tmp_path / "recovery"),
        SCRM_RECOVERY__SNAPSHOT_INTERVAL_S="0.5",
        SCRM_KAFKA__STOP_AT_END="false",
        SCRM_KAFKA__ACTIONS_TOPIC=f"act_{tag}",
        SCRM_MODELS__ENABLED="false",
        SCRM_JOURNEYS__DIR=str(journeys),
        SCRM_JOURNEYS__CAPS="[]",
    )
    assert scrm("recovery", "init", env=env).returncode == 0
    engine = EngineProcess(env)
    try:
        engine.wait_running()
        now = int(time.time() * 1000)
        left, paid = f"{tag}-left", f"{tag}-paid"
        evs = [
            {"eventId": f"{left}-1", "profileId": left, "type": "add_to_cart", "ts": now},
            {"eventId": f"{paid}-1", "profileId": paid, "type": "add_to_cart", "ts": now},
            {"eventId": f"{paid}-2", "profileId": paid, "type": "order_paid", "ts": now + 1000},
        ]
        broker.produce(names["events"], [(e["profileId"].encode(), orjson.dumps(e)) for e in evs])
        deadline = time.monotonic() + 30
        stored = re.compile(r"accepted 3 .* events ([3-9]|\d\d)\b")  # with the engine's own events
        while not stored.search(engine.output()):  # (a line of it: `.` stops at line ends)
            assert time.monotonic() < deadline, engine.output()
            time.sleep(0.05)  # the events are stored: a snapshot holding them was taken
        assert int(time.time() * 1000) < now + 10_000, "killed while the window is still open"
    finally:
        engine.kill()
    assert broker.consume_all(f"act_{tag}") == []

    engine = EngineProcess(env)
    try:
        engine.wait_running()
        deadline = time.monotonic() + 60
        got: list[dict] = []
        while not got:
            assert time.monotonic() < deadline, "the reminder never fired:\n" + engine.output()
            time.sleep(0.25)
            got = [orjson.loads(m.value()) for m in broker.consume_all(f"act_{tag}")]
        time.sleep(2)  # and nothing more fires
    finally:
        engine.kill()
    got = [orjson.loads(m.value()) for m in broker.consume_all(f"act_{tag}")]
    assert [(a["profileId"], a["template"], a["ts"]) for a in got] == [(left, "cart", now + 12_000)]


def test_rescale_restart_with_more_workers_keeps_state(broker, engine_settings, names, tmp_path, valkey):
    """Half the stream on one worker with recovery on, the rest (plus re-sent copies of
    the first half) on two workers: the restored state is re-keyed across the workers,
    the copies are known duplicates, and every profile's features equal a recomputation."""
    import io

    from rich.console import Console

    from flows.app import engine as engine_mod
    from flows.app.engine import init_recovery
    from tests.integration.test_features import synthetic_history

    history = synthetic_history(profiles=16, per_profile=30, seed=9, tag=names["tag"])
    first = [e for evs in history.values() for e in evs[:15]]
    second = [e for evs in history.values() for e in evs[15:]]
    resent = [evs[14] for evs in history.values()]  # the producer re-sends its last message
    broker.create_topic(names["events"], partitions=4)
    url = redis_url(valkey, 14)

    def run(workers: int):
        settings = engine_settings({
            "source": {"kind": "kafka"},
            "engine": {"workers": workers},
            "redis": {"url": url},
            "models": {"enabled": False},
            "journeys": {"enabled": False},
            "recovery": {"dir": str(tmp_path / "recovery"), "snapshot_interval_s": 0.2},
        })  # fmt: skip
        return settings, engine_mod.run(settings, Console(file=io.StringIO(), width=200))

    init_recovery(engine_settings({"recovery": {"dir": str(tmp_path / "recovery")}}), 1)
    broker.produce(names["events"], [(e["profileId"].encode(), orjson.dumps(e)) for e in first])
    _, one = run(1)
    assert one.counts.accepted == len(first)
    broker.produce(names["events"], [(e["profileId"].encode(), orjson.dumps(e)) for e in resent + second])
    settings, two = run(2)
    assert two.counts.records_in == len(second) + len(resent), "resumed at the snapshotted offsets"
    assert two.counts.duplicate == len(resent), "the restored dedupe state knows the first half"

    assert_features_exact(redis.Redis.from_url(url), feature_set(settings), history)
