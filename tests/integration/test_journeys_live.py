"""A live engine (real broker, Valkey, chDB) picks up a journey change while running: a
profile already waiting inside the journey finishes on the version it entered with, a new
one enters the new version, and an `once` journey is not entered twice."""

from __future__ import annotations

import io
import threading
import time

import orjson
import redis
from rich.console import Console

from flows.app import engine
from rules import store
from rules.journeys.load import load_folder

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


def test_hot_reload_version_pinning_and_reentry(broker, engine_settings, ch, names, valkey, tmp_path) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "live.yaml").write_text(JOURNEY.replace("TEMPLATE", "hello_v1"))
    settings = engine_settings(
        {
            "source": {"kind": "kafka", "duration_s": 24},
            "kafka": {"stop_at_end": False},
            "models": {"enabled": False},
            "journeys": {"dir": str(folder), "reload_interval_s": 0.5},
        }
    )
    broker.create_topic(names["events"], partitions=2)
    tag = names["tag"]
    p1, p2 = f"{tag}-p1", f"{tag}-p2"

    def send(pid: str, n: int) -> None:
        ev = {"eventId": f"{pid}-{n}", "profileId": pid, "type": "signup", "ts": int(time.time() * 1000)}
        broker.produce(names["events"], [(pid.encode(), orjson.dumps(ev))])

    def script() -> None:
        time.sleep(7)  # the engine is up (DDL, journeys loaded, partitions assigned)
        send(p1, 1)  # enters v1 and waits 6 s
        time.sleep(1.5)
        (folder / "live.yaml").write_text(JOURNEY.replace("TEMPLATE", "hello_v2"))
        store.load(redis.Redis.from_url(valkey), load_folder(folder))  # what `scrm journeys load` does
        time.sleep(2)  # within the 5 s the issue allows (reload_interval_s = 0.5)
        send(p2, 1)  # enters v2
        send(p1, 2)  # entry "once": not again

    t = threading.Thread(target=script)
    t.start()
    engine.run(settings, Console(file=io.StringIO()))
    t.join()
    rows = ch.query(
        f"SELECT profile_id, journey_version, template, status FROM {names['database']}.actions FINAL "
        f"WHERE journey_id = 'live_welcome' ORDER BY profile_id"
    ).result_rows
    assert rows == [(p1, 1, "hello_v1", "sent"), (p2, 2, "hello_v2", "sent")]
