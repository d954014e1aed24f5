"""A bounded buffer that hands rows to a writer by size or by age, whichever comes first.

Writers call `add()` from the dataflow thread; a background thread flushes. When the
buffer holds `max_rows`, `add()` waits (backpressure) instead of growing without bound.
A write that fails after its retries makes the next `add()`/`flush()`/`close()` raise
`SinkError`, so the dataflow stops loudly instead of dropping rows silently.

>>> written = []
>>> b = BatchBuffer("demo", written.extend, flush_rows=2, flush_interval_s=10, max_rows=10)
>>> b.add([1, 2, 3])
>>> b.close()
>>> written
[1, 2, 3]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from flows.core import metrics
from flows.core.errors import SinkError

T = TypeVar("T")


class BatchBuffer(Generic[T]):
    """Size/age batching with a flusher thread, a bound, and loud failure."""

    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], None],
        flush_rows: int,
        flush_interval_s: float,
        max_rows: int,
    ) -> None:
        self.name = name
        self._write = write
        self._flush_rows = flush_rows
        self._interval = flush_interval_s
        self._max_rows = max(max_rows, flush_rows)
        self._rows: list[T] = []
        self._oldest = 0.0  # monotonic time the oldest buffered row arrived
        self._in_flight = 0
        self._closing = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._gauge = metrics.SINK_BUFFER_ROWS.labels(sink=name)
        self._thread = threading.Thread(target=self._run, name=f"flush-{name}", daemon=True)
        self._thread.start()

    def add(self, rows: Sequence[T]) -> None:
        """Queue rows; waits while the buffer is full. Raises SinkError if writing failed."""
        if not rows:
            return
        with self._cond:
            self._raise_if_failed()
            while len(self._rows) + self._in_flight >= self._max_rows and self._error is None:
                self._cond.wait(0.5)
            self._raise_if_failed()
            if not self._rows:
                self._oldest = time.monotonic()
            self._rows.extend(rows)
            self._gauge.set(len(self._rows) + self._in_flight)
            if len(self._rows) >= self._flush_rows:
                self._cond.notify_all()

    def flush(self) -> None:
        """Write everything buffered now and wait until it is written."""
        with self._cond:
            self._force = True
            self._cond.notify_all()
            while (self._rows or self._in_flight) and self._error is None:
                self._cond.wait(0.1)
            self._raise_if_failed()

    def close(self) -> None:
        """Flush, stop the thread. Raises SinkError if any write failed."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            self._raise_if_failed()

    _force = False

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise SinkError(f"sink {self.name} stopped: {self._error}") from self._error

    def _due(self) -> bool:
        if not self._rows:
            return False
        if self._closing or self._force or len(self._rows) >= self._flush_rows:
            return True
        return time.monotonic() - self._oldest >= self._interval

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    if self._closing and not self._rows:
                        return
                    if self._rows:
                        wait = self._interval - (time.monotonic() - self._oldest)
                        self._cond.wait(max(wait, 0.001))
                    else:
                        self._cond.wait(0.5)
                batch = self._rows[: self._flush_rows]
                del self._rows[: self._flush_rows]
                if self._rows:
                    self._oldest = time.monotonic()
                else:
                    self._force = False
                self._in_flight = len(batch)
            try:
                self._write(batch)
            except BaseException as exc:  # surfaced to the dataflow thread, never swallowed
                with self._cond:
                    self._error = exc
                    self._in_flight = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self._in_flight = 0
                self._gauge.set(len(self._rows))
                self._cond.notify_all()
