"""Features end to end: Kafka -> engine -> Valkey hashes and chDB snapshots, checked against
an independent recomputation from the raw events (the oracle of the property tests)."""

from __future__ import annotations

import io
import random

import orjson
import pytest
import redis
from rich.console import Console

from flows.app import engine
from flows.core.contract import Event
from flows.dataflow.build import feature_set
from sinks.feature_store import feature_key
from tests.unit.features.test_windows import diff, oracle

T0 = 1_790_000_000_000  # ms, a fixed point in event time
HOUR = 3_600_000
TEXT = {b"tags", b"segment", b"journeys"}  # the hash's non-numeric fields
TYPES = ["page_view", "session_start", "add_to_cart", "order_paid", "order_created", "product_view",
         "message_opened", "complaint", "call_logged"]  # fmt: skip


def synthetic_history(profiles: int, per_profile: int, seed: int, tag: str) -> dict[str, list[dict]]:
    """Per profile, events in time order over ~3 days, with amounts, skus and channels."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {}
    for p in range(profiles):
        ts = T0 + rng.randrange(0, HOUR)
        evs = []
        for i in range(per_profile):
            ts += rng.randrange(0, 4 * HOUR)
            etype = rng.choice(TYPES)
            props: dict[str, object] = {"channel": rng.choice(["app", "wecom", "sms"])}
            if etype in ("order_paid", "order_created"):
                props["amount"] = round(rng.uniform(5, 900), 2)
            if etype in ("add_to_cart", "product_view"):
                props["price"] = round(rng.uniform(1, 90), 2)
                props["sku"] = f"SKU-{rng.randrange(12)}"
            pid = f"{tag}-p{p}"  # unique per test: the session's Valkey is shared
            evs.append({"eventId": f"{pid}-{i}", "profileId": pid, "type": etype, "ts": ts, "props": props})
        out[pid] = evs
    return out


def as_event(d: dict) -> Event:
    return Event(
        d["eventId"], d.get("profileId", ""), d["type"], d["ts"], "", d["props"], {}, {}, 0, "t", 0, 0
    )


def run_engine(settings):
    return engine.run(settings, Console(file=io.StringIO(), width=200))


@pytest.mark.parametrize("workers", [1, 2])
def test_online_store_and_snapshots_match_a_recomputation(
    broker, engine_settings, ch, names, valkey, workers
):
    history = synthetic_history(profiles=12, per_profile=40, seed=3, tag=names["tag"])
    p0 = f"{names['tag']}-p0"
    late = {"eventId": "late-1", "profileId": p0, "type": "order_paid",
            "ts": history[p0][-1]["ts"] - 3 * HOUR, "props": {"amount": 999.0}}  # fmt: skip
    history[p0].append(late)  # arrives last, 3 h behind p0's newest event: too late
    broker.create_topic(names["events"], partitions=2)
    broker.produce(
        names["events"], [(pid.encode(), orjson.dumps(e)) for pid, evs in history.items() for e in evs]
    )
    settings = engine_settings({
        "source": {"kind": "kafka"},
        "engine": {"workers": workers},
        "features": {"snapshot_interval_s": 0, "allowed_lateness_s": 3600},
    })  # fmt: skip
    run_engine(settings)

    fs = feature_set(settings)
    r = redis.Redis.from_url(valkey)
    db = names["database"]
    latest = {
        pid: (ts, values)
        for pid, ts, values in ch.query(
            f"SELECT profile_id, toUnixTimestamp64Milli(max(ts)), argMax(values, ts) FROM {db}.features "
            "GROUP BY profile_id"
        ).result_rows
    }
    for pid, evs in history.items():
        stored = {k.decode(): v.decode() for k, v in r.hgetall(feature_key(pid)).items()}
        as_of = int(stored.pop("as_of"))
        tags = stored.pop("tags", "")
        segment = stored.pop("segment")
        assert segment in {"prospect", "others", *(sg.name for sg in fs.segments)}
        assert (segment == "prospect") == ("days_since_last_order" not in stored)
        scores = {stored.pop(k) for k in ("rfm_r", "rfm_f", "rfm_m")}
        stored.pop("journeys", None)  # the running journey instances
        assert scores <= {"0.0", "1.0", "2.0", "3.0", "4.0", "5.0"}
        got = {k: float(v) for k, v in stored.items()}
        want = oracle(fs, [as_event(e) for e in evs], 3_600_000, as_of)
        assert not diff(fs, got, want), (pid, diff(fs, got, want))
        assert r.pttl(feature_key(pid)) > 0, "every hash carries a TTL"
        want_tags = {t.name for t in fs.tags if t.holds(want)}
        assert set(filter(None, tags.split(","))) == want_tags, pid
        # Snapshots come with events and segment changes, not with time alone (the store
        # follows stream time): the latest one matches a recomputation as of its own time.
        snap_ts, snap_values = latest[pid]
        assert max(e["ts"] for e in evs) <= snap_ts <= as_of
        snap = {k: v for k, v in snap_values.items() if not k.startswith("rfm_")}
        want_snap = oracle(fs, [as_event(e) for e in evs], 3_600_000, snap_ts)
        assert not diff(fs, snap, want_snap), (pid, "ClickHouse snapshot")
    assert ch.query(f"SELECT late FROM {db}.events FINAL WHERE event_id = 'late-1'").result_rows == [(1,)]
    assert ch.command(f"SELECT count() FROM {db}.events FINAL WHERE late = 1") == 1
    segments = ch.command(f"SELECT uniqExact(profile_id) FROM {db}.events WHERE type = 'segment_changed'")
    assert segments == len(history), "every profile entered its first segment"
    assert ch.command(f"SELECT countIf(segment = '') FROM {db}.features") == 0


def test_a_silent_profiles_hourly_count_falls_to_zero_in_replay(engine_settings, valkey, tmp_path, names):
    """Profile `quiet` views one page, then only others are active for 3 hours of event time.
    Replayed from a file (paced so the run lasts a few seconds of wall time), the quiet
    profile's timer refreshes it as of stream time: its 1 h count reaches 0, its 24 h
    count stays 1."""
    quiet_id, busy_id = f"{names['tag']}-quiet", f"{names['tag']}-busy"
    lines = [orjson.dumps({"eventId": "q1", "profileId": quiet_id, "type": "page_view", "ts": T0})]
    for i in range(1, 181):  # one event a minute from someone else, for 3 hours
        lines.append(orjson.dumps({"eventId": f"b{i}", "profileId": busy_id, "type": "page_view",
                                   "ts": T0 + i * 60_000}))  # fmt: skip
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    settings = engine_settings({
        "source": {"kind": "file", "file": str(path), "rate": 60},
        "features": {"idle_refresh_s": 0.2},
    })  # fmt: skip
    run_engine(settings)
    r = redis.Redis.from_url(valkey)
    quiet = {k.decode(): float(v) for k, v in r.hgetall(feature_key(quiet_id)).items() if k not in TEXT}
    assert quiet["as_of"] >= T0 + HOUR + 5 * 60_000, "refreshed as of stream time, not its own last event"
    assert quiet["page_views_1h"] == 0.0
    assert quiet["page_views_24h"] == 1.0
    busy = {k.decode(): float(v) for k, v in r.hgetall(feature_key(busy_id)).items() if k not in TEXT}
    assert busy["page_views_1h"] >= 55
