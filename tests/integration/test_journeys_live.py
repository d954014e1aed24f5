"""A live engine (real broker, Valkey, chDB) picks up a journey change while running: a
profile already waiting inside the journey finishes on the version it entered with, a new
one enters the new version, and an `once` journey is not entered twice."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable

import orjson
import redis
from rich.console import Console

from flows.app import engine
from flows.core import metrics
from flows.sources.control import RunControl
from rules import store
from rules.journeys.load import load_folder
from sinks.feature_store import feature_key
from tests.integration.test_faults import redis_url

JOURNEY = """
id: live_welcome
name: Live welcome
priority: 10
entry: {policy: once}
trigger:
  event: {type: signup}
nodes:
  - {id: settle, type: wait, duration: 6s}
  - {id: hello, type: send, channel: email, template: TEMPLATE}
"""


def test_hot_reload_version_pinning_and_reentry(
    broker, engine_settings, ch, names, valkey, tmp_path, caplog
) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "live.yaml").write_text(JOURNEY.replace("TEMPLATE", "hello_v1"))
    url = redis_url(valkey, 9)  # its own: no other test's engine runs this journey
    settings = engine_settings(
        {
            "source": {"kind": "kafka"},
            "kafka": {"stop_at_end": False},
            "redis": {"url": url},
            "models": {"enabled": False},
            "journeys": {"dir": str(folder), "reload_interval_s": 0.5},
        }
    )
    broker.create_topic(names["events"], partitions=2)
    tag = names["tag"]
    p1, p2 = f"{tag}-p1", f"{tag}-p2"
    client = redis.Redis.from_url(url)
    control = RunControl()
    failed: list[BaseException] = []
    caplog.set_level(logging.INFO, logger="scrm.journeys")

    def send(pid: str, n: int) -> None:
        ev = {"eventId": f"{pid}-{n}", "profileId": pid, "type": "signup", "ts": int(time.time() * 1000)}
        broker.produce(names["events"], [(pid.encode(), orjson.dumps(ev))])

    def until(what: str, cond: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
            time.sleep(0.05)

    def reloaded() -> bool:
        return any("live_welcome v2" in r.getMessage() for r in list(caplog.records))

    def sent() -> float:
        return metrics.value("scrm_journey_decisions_total", {"journey": "live_welcome", "status": "sent"})

    sent_before = sent()

    def script() -> None:
        try:
            send(p1, 1)  # enters v1 and waits 6 s
            # its profile has had its signup (features written after the journeys ran on it)
            until("p1's signup processed", lambda: client.exists(feature_key(p1)), 90)
            (folder / "live.yaml").write_text(JOURNEY.replace("TEMPLATE", "hello_v2"))
            store.load(client, load_folder(folder))  # what `scrm journeys load` does
            until("the engine runs v2", reloaded, 5)  # the bound (reload_interval_s = 0.5)
            send(p2, 1)  # enters v2
            send(p1, 2)  # entry "once": not again
            until("both hellos sent (p2's after its 6 s wait)", lambda: sent() - sent_before >= 2, 60)
            time.sleep(2)  # and p1 gets no second one (it would be due with p2's)
        except BaseException as exc:  # reported by the test
            failed.append(exc)
        finally:
            control.stop()

    t = threading.Thread(target=script, daemon=True)
    t.start()
    engine.run(settings, Console(file=io.StringIO()), control=control)
    t.join()
    assert not failed, failed[0]
    rows = ch.query(
        f"SELECT profile_id, journey_version, template, status FROM {names['database']}.actions FINAL "
        f"WHERE journey_id = 'live_welcome' ORDER BY profile_id"
    ).result_rows
    assert rows == [(p1, 1, "hello_v1", "sent"), (p2, 2, "hello_v2", "sent")]
