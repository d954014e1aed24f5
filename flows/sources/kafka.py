"""The Kafka source: one partition per topic partition, offsets snapshotted with the state."""

from __future__ import annotations

import logging
import time
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from flows.core import metrics
from flows.core.contract import RawRecord
from flows.core.errors import SourceError
from flows.core.settings import KafkaSettings
from flows.core.streamtime import now_ms
from flows.sources.control import RunControl

log = logging.getLogger("scrm.sources")


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
        """Report to `stream` (a `flows.core.streamtime.StreamClock`) after every poll whether
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
            "fetch.wait.max.ms": self._settings.fetch_wait_ms,
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
            append(RawRecord(m.value(), origin, part, m.offset() or 0, m.key(), t))
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
