"""The engine as a user runs it: the `scrm` command in real processes.

Two Bytewax processes on loopback over a partitioned topic give the same result as
one; Ctrl-C flushes every sink and exits 0; `scrm init` is idempotent; `scrm produce`
keys by profileId. Each process that opens chDB gets its own data path (chDB opens a
path in one process at a time), and results are read back with `scrm query`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson

from flows.app.testing import EngineProcess, free_port

NOW_S = 1_790_000_000
USER = "WHERE origin != 'engine'"  # the input's events, not the engine's own tag changes


def scrm_env(broker, names, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRM_")}
    env.update(
        {
            "SCRM_KAFKA__BOOTSTRAP": broker.bootstrap,
            "SCRM_KAFKA__EVENTS_TOPIC": names["events"],
            "SCRM_KAFKA__DLQ_TOPIC": names["dlq"],
            "SCRM_KAFKA__STOP_AT_END": "true",
            "SCRM_ENGINE__DATA_DIR": str(data),
            "SCRM_ENGINE__PROGRESS_INTERVAL_S": "0.5",
            "SCRM_CLICKHOUSE__URL": f"chdb://{data}/clickhouse",
            "SCRM_CLICKHOUSE__DATABASE": names["database"],
            "SCRM_METRICS__PORT": "0",
            "COLUMNS": "200",
        }
    )
    env.update(extra)
    return env


def scrm(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def query_json(sql: str, env: dict[str, str]) -> list[dict[str, object]]:
    res = scrm("query", sql, "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    return orjson.loads(res.stdout)


def test_two_processes_match_one(broker, names, tmp_path):
    broker.create_topic(names["events"], partitions=4)
    msgs = []
    for i in range(2000):
        body = orjson.dumps(
            {"eventId": f"e{i}", "profileId": f"p{i % 97}", "type": "page_view", "ts": NOW_S + i}
        )
        msgs.append((f"p{i % 97}".encode(), body))
    msgs += [(b"p1", msgs[5][1]), (b"p2", msgs[6][1]), (None, b"garbage")]
    broker.produce(names["events"], msgs)

    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    envs = [scrm_env(broker, names, tmp_path / f"proc{i}") for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.app.cli",
                "run",
                "--source",
                "kafka",
                "-i",
                str(i),
                "-a",
                addresses,
            ],
            env=envs[i],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    ids: list[str] = []
    dead = 0
    for env in envs:
        ids += [
            r["event_id"] for r in query_json(f"SELECT event_id FROM {names['database']}.events {USER}", env)
        ]
        dead += query_json(f"SELECT count() AS n FROM {names['database']}.dead_letters", env)[0]["n"]
    assert len(ids) == len(set(ids)) == 2000, "every event exactly once across the two processes"
    assert dead == 1

    one = scrm_env(broker, names, tmp_path / "single")
    res = scrm("run", "--source", "kafka", env=one, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    single = {
        r["event_id"] for r in query_json(f"SELECT event_id FROM {names['database']}.events {USER}", one)
    }
    assert single == set(ids)


SCRM_RUN = (sys.executable, "-m", "flows.app.cli", "run")


def test_a_live_cluster_bounded_by_max_events_ends_also_where_no_partition_is_read(broker, names, tmp_path):
    # one partition: the second process reads nothing, so its own count never reaches the
    # bound; its wake input has to end by itself for the cluster to end
    broker.create_topic(names["events"], partitions=1)
    msgs = [
        (
            f"p{i % 7}".encode(),
            orjson.dumps(
                {"eventId": f"e{i}", "profileId": f"p{i % 7}", "type": "page_view", "ts": NOW_S + i}
            ),
        )
        for i in range(300)
    ]
    broker.produce(names["events"], msgs)
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    envs = [scrm_env(broker, names, tmp_path / f"proc{i}", SCRM_KAFKA__STOP_AT_END="false") for i in range(2)]
    procs = [
        subprocess.Popen(
            [*SCRM_RUN, "--source", "kafka", "--max-events", "200", "-i", str(i), "-a", addresses],
            env=envs[i],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=90)[0] for p in procs]
    except subprocess.TimeoutExpired as exc:
        for p in procs:
            p.kill()
        tails = [p.communicate()[0][-1500:] for p in procs]
        raise AssertionError(f"the cluster did not end: {tails}") from exc
    assert [p.returncode for p in procs] == [0, 0], outputs


def test_ctrl_c_flushes_every_sink_and_exits_zero(broker, names, tmp_path):
    """Ctrl-C once the engine runs and events flow (its progress lines count records read,
    however long start-up took): the input ends, every sink flushes, the exit code is 0."""
    env = scrm_env(broker, names, tmp_path / "live")
    engine = EngineProcess(env, args=("run", "--rate", "1000"))
    try:
        engine.wait_running(records=1000)  # a second of input: rows in every sink's buffers
        rc = engine.interrupt(timeout=60)
    finally:
        engine.kill()
    out = engine.output()
    assert rc == 0, out
    assert "stopping: ending input and flushing sinks" in out
    assert re.search(r"\[\s+\d+s\] in [\d,]+ \([\d,]+/s\)", out), "live progress lines"
    accepted = int(re.search(r"accepted\s*│\s*│\s*([\d,]+)", out).group(1).replace(",", ""))
    assert accepted > 0
    rows = query_json(f"SELECT count() AS n FROM {names['database']}.events FINAL {USER}", env)[0]["n"]
    assert rows == accepted, "every accepted event was flushed before exit"


def test_init_is_idempotent_and_produce_keys_by_profile(broker, names, tmp_path):
    env = scrm_env(broker, names, tmp_path / "cli", SCRM_SOURCE__SYNTHETIC__MALFORMED_SHARE="0")
    for _ in range(2):
        res = scrm("init", env=env)
        assert res.returncode == 0, res.stderr
        assert "001_database.sql" in res.stdout
    tables = query_json(
        f"SELECT name FROM system.tables WHERE database = '{names['database']}' ORDER BY name", env
    )
    want = [
        "actions", "actions_daily_agg", "actions_daily_mv", "daily_actions", "daily_active_profiles",
        "daily_events", "daily_revenue", "dead_letters", "events", "events_by_person", "events_daily_agg",
        "events_daily_mv",
        "features", "identities", "model_metrics", "paid_orders", "paid_orders_mv", "person_now",
        "schema_migrations", "scores",
    ]  # fmt: skip
    assert [t["name"] for t in tables] == want

    res = scrm("produce", "--synthetic", "500", env=env)
    assert res.returncode == 0, res.stderr
    assert "delivered 500" in res.stdout
    got = broker.consume_all(names["events"])
    assert len(got) == 500
    for m in got:
        assert m.key() == orjson.loads(m.value())["profileId"].encode()
