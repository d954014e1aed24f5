"""The dataflow's second input: wakes for the profiles whose deadline has passed
(`flows.dataflow.wakes`), ending when the events' input ends.

A bounded input (a replay, a test, ``stop_at_end``) must let the flow finish, so the wake
input ends once every partition of the events' input in this process has ended (or the run
is stopping); the profiles' ``on_eof`` then does what was still due. A process that reads
no partition of an input that ends (a replay, ``stop_at_end``) ends its wakes after
`NO_INPUT_GRACE_S` and says so: its profiles then age only at their events and at the end.
On an open-ended input (live Kafka) it keeps them until the run stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    Source,
    StatefulSourcePartition,
    StatelessSourcePartition,
)

from flows.core import metrics
from flows.core.streamtime import StreamClock
from flows.dataflow.profile_step import ProfileOut, rescore_silent
from flows.dataflow.wakes import WAKE, SilentBook, Wake, WakeQueue

log = logging.getLogger("scrm.wakes")

TICK_S = 0.05  # how often the wake input looks at its queue when nothing is due sooner
NO_INPUT_GRACE_S = 5.0


class InputEnds:
    """Whether the events' input has ended in this process: its partitions are counted as
    they are built and as they end (shared by the process's workers)."""

    def __init__(
        self, stopping: Callable[[], bool] | None = None, grace_s: float | None = NO_INPUT_GRACE_S
    ) -> None:
        self._stopping = stopping
        self._grace_s = grace_s
        self._lock = threading.Lock()
        self._opened = 0
        self._open = 0
        self._born = time.monotonic()
        self._warned = False

    def opened(self) -> None:
        with self._lock:
            self._opened += 1
            self._open += 1

    def closed(self) -> None:
        with self._lock:
            self._open -= 1

    def ended(self) -> bool:
        if self._stopping is not None and self._stopping():
            return True
        if self._opened:
            return self._open <= 0
        if self._grace_s is None or time.monotonic() - self._born < self._grace_s:
            return False  # an open-ended input: its other processes' events still come
        with self._lock:
            if not self._warned:
                self._warned = True
                log.warning(
                    "this process reads no partition of the input: its profiles' silent "
                    "rescorings and journey deadlines wait for their next event or the end"
                )
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {"stopping": self._stopping, "grace_s": self._grace_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


def watched(source: Source[Any], ends: InputEnds) -> Source[Any]:
    """`source`, its partitions counted in `ends` as they are built and as they end."""
    if isinstance(source, FixedPartitionedSource):
        return _WatchedFixed(source, ends)
    if isinstance(source, DynamicSource):
        return _WatchedDynamic(source, ends)
    raise TypeError(f"not a Bytewax source: {type(source).__name__}")


class _Watched:
    """What both kinds of partition share: the inner partition, ended once."""

    def __init__(self, inner: Any, ends: InputEnds) -> None:
        self._inner = inner
        self._ends = ends
        self._done = False
        ends.opened()

    def next_batch(self) -> Any:
        try:
            return self._inner.next_batch()
        except StopIteration:
            if not self._done:
                self._done = True
                self._ends.closed()
            raise

    def next_awake(self) -> datetime | None:
        awake: datetime | None = self._inner.next_awake()
        return awake

    def close(self) -> None:
        self._inner.close()


class _WatchedStateful(_Watched, StatefulSourcePartition[Any, Any]):
    def snapshot(self) -> Any:
        return self._inner.snapshot()


class _WatchedStateless(_Watched, StatelessSourcePartition[Any]):
    pass


class _WatchedFixed(FixedPartitionedSource[Any, Any]):
    def __init__(self, inner: FixedPartitionedSource[Any, Any], ends: InputEnds) -> None:
        self._inner = inner
        self._ends = ends

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any | None) -> _WatchedStateful:
        return _WatchedStateful(self._inner.build_part(step_id, for_part, resume_state), self._ends)


class _WatchedDynamic(DynamicSource[Any]):
    def __init__(self, inner: DynamicSource[Any], ends: InputEnds) -> None:
        self._inner = inner
        self._ends = ends

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WatchedStateless:
        return _WatchedStateless(self._inner.build(step_id, worker_index, worker_count), self._ends)


Woken = tuple[str, Wake | ProfileOut]


class WakeSource(DynamicSource[Woken]):
    """On each worker: ``(key, WAKE)`` for each key in its queue whose deadline has passed;
    with a silent book (models on), the rescorings that stream time has reached, done here,
    as ``("", ProfileOut)``, and ``(key, Wake.rescore(at))`` for a profile whose score
    would cross a threshold at event time ``at``."""

    def __init__(
        self,
        queue: WakeQueue,
        ends: InputEnds,
        clock: Callable[[], float] = time.time,
        book: SilentBook | None = None,
        stream: StreamClock | None = None,
    ) -> None:
        self._queue = queue
        self._ends = ends
        self._clock = clock
        self._book = book
        self._stream = stream

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WakePartition:
        return _WakePartition(self._queue, self._ends, self._clock, worker_index, self._book, self._stream)


class _WakePartition(StatelessSourcePartition[Woken]):
    def __init__(
        self,
        queue: WakeQueue,
        ends: InputEnds,
        clock: Callable[[], float],
        worker: int,
        book: SilentBook | None,
        stream: StreamClock | None,
    ) -> None:
        self._queue = queue
        self._ends = ends
        self._clock = clock
        self._held = metrics.WAKE_DEADLINES.labels(worker=str(worker))
        self._book = book
        self._stream = stream
        self._silent = metrics.SILENT_HELD.labels(worker=str(worker))

    def next_batch(self) -> list[Woken]:
        if self._ends.ended():
            raise StopIteration
        due = self._queue.due(self._clock())
        self._held.set(len(self._queue))
        out: list[Woken] = [(key, WAKE) for key in due]
        book = self._book
        if book is not None and self._stream is not None:
            rescored, woken = rescore_silent(book, self._stream)
            out += [("", p) for p in rescored]
            out += woken
            self._silent.set(len(book))
        return out

    def next_awake(self) -> datetime | None:
        at = self._queue.next_at()
        wait = TICK_S if at is None else min(at - self._clock(), TICK_S)
        if wait <= 0:
            return None  # due already: at once
        # Bytewax wakes the partition on the real clock, whatever clock the flow reads
        return datetime.fromtimestamp(time.time() + wait, UTC)
