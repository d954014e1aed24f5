"""Buffered sinks that flush when Bytewax snapshots, so a snapshot never runs ahead of them.

The ClickHouse and Redis sinks buffer rows (by size or age) for throughput, and the
Kafka sinks hand messages to librdkafka without waiting for each batch's
acknowledgement. With recovery on, Bytewax commits an epoch once every step has
snapshotted it; a row still in a buffer (or a message not yet acknowledged) then would
be lost by a crash, because the input position behind it is already committed.
`FlushOnSnapshot` wraps such a sink as a fixed-partitioned sink: Bytewax calls each
partition's ``snapshot()`` at every epoch, which flushes the buffer before the epoch
can be committed. Delivery: at-least-once, like the wrapped sink.

Items must be ``(key, value)`` pairs (the key routes them to a partition), the value as
`flows.core.wire` sends it; the dataflow keys them before such a sink. With one
partition (the default) one worker writes; items from other workers are exchanged to it.
"""

from __future__ import annotations

import zlib
from typing import Any, Generic, Protocol, TypeVar

from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition

from flows.core.wire import from_wire

T = TypeVar("T")


class Flushable(Protocol[T]):
    def write_batch(self, items: list[T]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class FlushOnSnapshot(FixedPartitionedSink[T, None], Generic[T]):
    """`inner`'s partitions, flushed at every Bytewax snapshot."""

    def __init__(self, inner: DynamicSink[T], name: str, partitions: int = 1) -> None:
        self.inner = inner
        self._name = name
        self._n = max(1, partitions)

    def list_parts(self) -> list[str]:
        return [f"{self._name}-{i}" for i in range(self._n)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Flushing[T]:
        index = int(for_part.rsplit("-", 1)[1])
        return _Flushing(self.inner.build(step_id, index, self._n))


class _Flushing(StatefulSinkPartition[T, None], Generic[T]):
    def __init__(self, part: Any) -> None:
        self._part: Flushable[T] = part

    def write_batch(self, values: list[Any]) -> None:
        self._part.write_batch([from_wire(v) for v in values])  # keyed by `flows.dataflow.build`

    def snapshot(self) -> None:
        self._part.flush()
        return None

    def close(self) -> None:
        self._part.close()
