"""Where events come from: Kafka, file replay (JSONL / CSV), or the synthetic generator.

Every source emits `RawRecord`s (bytes plus where they came from) so validation, the
dead letters and the metrics treat all of them alike. Every source obeys one
`RunControl`: a bounded run (``--max-events``, ``--duration``) or Ctrl-C ends the input
(EOF), which lets each sink flush and the dataflow finish cleanly; nothing is stopped
from a sink.

Delivery: the sources are Bytewax *stateful* partitions. With recovery on, their
position (Kafka offset, file byte offset, generator state) is snapshotted with the
rest of the state, so a restart resumes where the last snapshot was taken
(at-least-once; eventId dedupe and the ReplacingMergeTree keys absorb the replay).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from flows.contract import RawRecord
from flows.errors import SourceError
from flows.settings import CsvSettings, KafkaSettings, SyntheticSettings
from flows.synthetic import SyntheticConfig, SyntheticCustomers
from sinks import metrics

log = logging.getLogger("scrm.sources")

Clock = Callable[[], float]


def now_ms(clock: Clock = time.time) -> int:
    return int(clock() * 1000)


@dataclass
class RunControl:
    """Shared by every source partition of a process: when to stop reading.

    `stop()` (Ctrl-C) and the bounds (`max_records`, `duration_s`) end the input; the
    count is shared by all partitions of the process.
    """

    max_records: int = 0
    duration_s: float = 0.0
    clock: Clock = time.monotonic
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _taken: int = 0
    _started: float | None = None

    def start(self) -> None:
        if self._started is None:
            self._started = self.clock()

    def stop(self) -> None:
        self._stop.set()

    @property
    def taken(self) -> int:
        return self._taken

    def stopping(self) -> bool:
        if self._stop.is_set():
            return True
        started = self._started
        if self.duration_s and started is not None and self.clock() - started >= self.duration_s:
            self._stop.set()
            return True
        return bool(self.max_records and self._taken >= self.max_records)

    def take(self, wanted: int) -> int:
        """How many of `wanted` records may still be read (0 once stopping)."""
        if self.stopping():
            return 0
        with self._lock:
            if self.max_records:
                wanted = min(wanted, self.max_records - self._taken)
            wanted = max(wanted, 0)
            self._taken += wanted
            return wanted

    def quota(self, pacer: Pacer, cap: int) -> int:
        """How many records a paced source may read now; StopIteration (EOF) once stopping."""
        n = self.take(pacer.allowance(cap))
        if n == 0 and self.stopping():
            raise StopIteration
        return n

    def note(self, n: int) -> None:
        """Count records read by a source that cannot ask first (Kafka batches)."""
        with self._lock:
            self._taken += n

    def __getstate__(self) -> dict[str, Any]:  # bytewax may pickle the flow; keep it plain
        return {"max_records": self.max_records, "duration_s": self.duration_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


class Pacer:
    """Holds a source to `rate` records/s (0 = unlimited) with a token bucket."""

    def __init__(self, rate: float, clock: Clock = time.monotonic, burst_s: float = 1.0) -> None:
        self.rate = rate
        self._clock = clock
        self._burst = max(1.0, rate * burst_s)
        self._tokens = 0.0
        self._last = clock()

    def allowance(self, cap: int) -> int:
        if self.rate <= 0:
            return cap
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        n = min(cap, int(self._tokens))
        self._tokens -= n
        return n

    def next_awake(self) -> datetime | None:
        if self.rate <= 0 or self._tokens >= 1:
            return None
        wait = (1 - self._tokens) / self.rate
        return datetime.now(UTC) + timedelta(seconds=min(wait, 0.05))


# ---------------------------------------------------------------- synthetic


def synthetic_config(settings: SyntheticSettings) -> SyntheticConfig:
    """The generator's configuration from the ``[source.synthetic]`` settings."""
    return SyntheticConfig(
        profiles=settings.profiles,
        seed=settings.seed,
        late_share=settings.late_share,
        max_lateness_ms=int(settings.max_lateness_s * 1000),
        malformed_share=settings.malformed_share,
        duplicate_share=settings.duplicate_share,
    )


class SimulatedTime:
    """Event time of the synthetic source: `history_days` in the past, advancing a fixed
    step per event until it catches up with the wall clock, then the wall clock itself.

    >>> t = SimulatedTime(start_ms=1_000, step_ms=10, wall=lambda: 2.0)
    >>> [t.next() for _ in range(3)], t.live
    ([1000, 1010, 1020], False)
    >>> t.sim_ms = 5_000; t.next(), t.live      # caught up with the wall clock (2 s)
    (2000, True)
    """

    __slots__ = ("live", "sim_ms", "step_ms", "wall")

    def __init__(self, start_ms: int, step_ms: float, wall: Clock = time.time) -> None:
        self.sim_ms = float(start_ms)
        self.step_ms = step_ms
        self.wall = wall
        self.live = False

    def next(self) -> int:
        if not self.live:
            t = self.sim_ms
            self.sim_ms += self.step_ms
            if t < self.wall() * 1000:
                return int(t)
            self.live = True
        return int(self.wall() * 1000)

    def __getstate__(self) -> tuple[float, float, bool]:
        return (self.sim_ms, self.step_ms, self.live)

    def __setstate__(self, st: tuple[float, float, bool]) -> None:
        self.sim_ms, self.step_ms, self.live = st
        self.wall = time.time


class SyntheticSource(FixedPartitionedSource[RawRecord, Any]):
    """The seeded synthetic customer generator as one input partition.

    Event time follows the wall clock (events are "now", late ones up to the configured
    lateness behind), paced to `rate` events/s. With ``history_days`` it first replays
    simulated history (see `SimulatedTime`): warm features and models, then go live.
    """

    def __init__(self, settings: SyntheticSettings, rate: float, control: RunControl) -> None:
        self._config = synthetic_config(settings)
        self._rate = rate
        self._control = control
        self._history_ms = int(settings.history_days * 86_400_000)
        self._step_ms = 86_400_000 / settings.events_per_day

    def list_parts(self) -> list[str]:
        return ["synthetic-0"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any | None) -> _SyntheticPartition:
        if resume_state is not None:
            gen, sim = resume_state
        else:
            gen = SyntheticCustomers(self._config)
            sim = SimulatedTime(now_ms() - self._history_ms, self._step_ms)
            sim.live = self._history_ms == 0
        return _SyntheticPartition(gen, sim, self._rate, self._control, f"synthetic:{self._config.seed}")


class _SyntheticPartition(StatefulSourcePartition[RawRecord, Any]):
    def __init__(
        self, gen: SyntheticCustomers, sim: SimulatedTime, rate: float, control: RunControl, origin: str
    ) -> None:
        self._gen = gen
        self._sim = sim
        self._pacer = Pacer(rate)
        self._control = control
        self._origin = origin
        self._counter = metrics.RECORDS_IN.labels(source="synthetic")
        control.start()

    def next_batch(self) -> list[RawRecord]:
        n = self._control.quota(self._pacer, 1000)
        if n == 0:
            return []
        t = now_ms()
        start = self._gen.generated
        gen, sim, origin = self._gen, self._sim, self._origin
        if sim.live:
            out = [RawRecord(gen.next_event(t), origin, 0, start + i, None, t) for i in range(n)]
        else:
            out = [RawRecord(gen.next_event(sim.next()), origin, 0, start + i, None, t) for i in range(n)]
        self._counter.inc(n)
        return out

    def next_awake(self) -> datetime | None:
        return self._pacer.next_awake()

    def snapshot(self) -> Any:
        import copy

        return (copy.deepcopy(self._gen), copy.deepcopy(self._sim))


# ---------------------------------------------------------------- files


def csv_row_to_object(row: dict[str, str], mapping: CsvSettings) -> dict[str, Any]:
    """A CSV row as a contract object: mapped columns, ``props.*`` columns as props.

    Numeric-looking props become numbers; empty cells are left out.

    >>> m = CsvSettings()
    >>> csv_row_to_object({"event_id": "e1", "profile_id": "p1", "type": "order_paid",
    ...                    "ts": "1700000000", "props.amount": "12.50", "props.sku": ""}, m)
    {'eventId': 'e1', 'profileId': 'p1', 'type': 'order_paid', 'ts': '1700000000', 'props': {'amount': 12.5}}
    """
    obj: dict[str, Any] = {}
    for field_name, column in mapping.columns.items():
        value = row.get(column)
        if value not in (None, ""):
            obj[field_name] = value
    if mapping.props_prefix:
        props: dict[str, Any] = {}
        plen = len(mapping.props_prefix)
        for column, value in row.items():
            if column and column.startswith(mapping.props_prefix) and value not in (None, ""):
                props[column[plen:]] = _number_or_text(value)
        if props:
            obj["props"] = props
    return obj


def _number_or_text(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return number if number == number and number not in (float("inf"), float("-inf")) else value


class FileSource(FixedPartitionedSource[RawRecord, int]):
    """Replays a JSONL file (one event per line) or a CSV file (columns mapped by settings).

    One partition per file; the snapshot is the byte offset of the next line, so a
    resumed replay continues where it stopped. The run ends at the end of the file.
    """

    def __init__(self, path: Path, csv_settings: CsvSettings, rate: float, control: RunControl) -> None:
        self._path = Path(path)
        if not self._path.is_file():
            raise SourceError(f"{self._path}: no such file to replay")
        self._csv = csv_settings if self._path.suffix.lower() == ".csv" else None
        self._rate = rate
        self._control = control

    def list_parts(self) -> list[str]:
        return [str(self._path.resolve())]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(Path(for_part), self._csv, resume_state or 0, self._rate, self._control)


class _FilePartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(
        self,
        path: Path,
        csv_settings: CsvSettings | None,
        offset: int,
        rate: float,
        control: RunControl,
    ) -> None:
        self._fh = path.open("rb")
        self._csv = csv_settings
        self._header: list[str] | None = None
        if csv_settings is not None:
            header_line = self._fh.readline()
            self._header = next(
                csv.reader([header_line.decode("utf-8-sig")], delimiter=csv_settings.delimiter)
            )
            offset = max(offset, self._fh.tell())
        self._fh.seek(offset)
        self._origin = f"file:{path}"
        self._pacer = Pacer(rate)
        self._control = control
        self._counter = metrics.RECORDS_IN.labels(source="file")
        control.start()

    def next_batch(self) -> list[RawRecord]:
        n = self._control.quota(self._pacer, 1000)
        if n == 0:
            return []
        out: list[RawRecord] = []
        t = now_ms()
        for _ in range(n):
            offset = self._fh.tell()
            line = self._fh.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            out.append(RawRecord(self._encode(line), self._origin, 0, offset, None, t))
        if not out and not line:
            raise StopIteration
        self._counter.inc(len(out))
        return out

    def _encode(self, line: bytes) -> bytes:
        if self._csv is None or self._header is None:
            return line
        try:
            cells = next(csv.reader(io.StringIO(line.decode("utf-8")), delimiter=self._csv.delimiter))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            return line  # not decodable: the validator dead-letters it as invalid_json
        row = dict(zip(self._header, cells, strict=False))
        return orjson.dumps(csv_row_to_object(row, self._csv))

    def next_awake(self) -> datetime | None:
        return self._pacer.next_awake()

    def snapshot(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


# ---------------------------------------------------------------- kafka


class KafkaEventsSource(FixedPartitionedSource[RawRecord, int]):
    """The events topic, one input partition per Kafka partition (assigned, no group).

    Offsets live in the Bytewax snapshot, not in a consumer group, exactly like Bytewax's
    own KafkaSource; messages become `RawRecord`s directly (no intermediate message
    object: this is the hottest loop of the engine). Consumer errors are logged and
    counted, never turned into events. With ``kafka.stop_at_end`` the run ends at the end
    of every partition.
    """

    def __init__(self, settings: KafkaSettings, control: RunControl) -> None:
        self._settings = settings
        self._control = control
        self._stream: Any = None

    def attach_stream_clock(self, stream: Any) -> None:
        """Report to `stream` (a `flows.streamtime.StreamClock`) after every poll whether
        each partition is caught up, so a partition reading a backlog never has its stream
        time moved by the wall clock."""
        stream.source_reports = True
        self._stream = stream

    def _config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self._settings.bootstrap,
            "group.id": "scrm-unused",  # partitions are assigned; offsets are in snapshots
            "enable.auto.commit": False,
            "enable.partition.eof": self._settings.stop_at_end,
        }
        conf.update(self._settings.extra)
        return conf

    def list_parts(self) -> list[str]:
        topic = self._settings.events_topic
        try:
            admin = AdminClient({"bootstrap.servers": self._settings.bootstrap, **self._settings.extra})
            meta = admin.list_topics(topic, timeout=self._settings.delivery_timeout_s).topics[topic]
            if meta.error is not None:
                raise SourceError(meta.error.str())
        except Exception as exc:
            raise SourceError(
                f"cannot list partitions of topic {topic!r} at {self._settings.bootstrap}: {exc}"
            ) from exc
        return [f"{i}-{topic}" for i in sorted(meta.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        idx, topic = for_part.split("-", 1)
        if topic != self._settings.events_topic:
            raise SourceError(
                f"the recovery snapshot is for topic {topic!r}, not {self._settings.events_topic!r}"
            )
        offset = OFFSET_BEGINNING if resume_state is None else resume_state
        consumer = Consumer(self._config())
        consumer.assign([TopicPartition(topic, int(idx), offset)])
        return _KafkaPartition(
            consumer, topic, int(idx), offset, self._settings.consume_batch, self._control, self._stream
        )


class _KafkaPartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        partition: int,
        offset: int,
        batch_size: int,
        control: RunControl,
        stream: Any = None,
    ) -> None:
        self._consumer = consumer
        self._stream = stream
        self._tp = TopicPartition(topic, partition)
        self._origin = f"kafka:{topic}"
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._control = control
        self._eof = False
        self._counter = metrics.RECORDS_IN.labels(source="kafka")
        self._last_error_log = 0.0
        control.start()

    def next_batch(self) -> list[RawRecord]:
        if self._eof or self._control.stopping():
            raise StopIteration
        msgs = self._consumer.consume(self._batch_size, 0.001)
        if not msgs:
            if self._stream is not None:
                self._stream.caught_up(self._partition, self._at_end())
            return []
        if self._stream is not None:
            self._stream.caught_up(self._partition, False)
        t = now_ms()
        origin, part = self._origin, self._partition
        out: list[RawRecord] = []
        append = out.append
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof = True  # emit this batch; end at the next call
                    if self._stream is not None:
                        self._stream.caught_up(self._partition, True)
                    break
                self._log_error(err)
                continue
            append(RawRecord(m.value(), origin, part, m.offset(), m.key(), t))
        if out:
            self._offset = out[-1].offset + 1
            self._counter.inc(len(out))
            self._control.note(len(out))
        return out

    def _at_end(self) -> bool:
        """Whether this partition has been read to its end, by the high watermark of the
        last fetch (cached by librdkafka: no request). Unknown before the first fetch."""
        low, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        if high < 0:
            return False
        return (self._offset if self._offset >= 0 else low) >= high

    def _log_error(self, err: Any) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 5:
            log.warning("Kafka consumer error (librdkafka retries by itself): %s", err)
            self._last_error_log = now

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()
