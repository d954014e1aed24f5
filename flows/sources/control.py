"""What every source obeys: when to stop reading (`RunControl`) and how fast (`Pacer`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.core.streamtime import Clock


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
    first_read: float | None = None  # `clock()` when this process's sources first read records

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
            self._count(wanted)
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
            self._count(n)

    def _count(self, n: int) -> None:
        """`n` more records read (the lock held); the first ones mark when reading began."""
        self._taken += n
        if n and self.first_read is None:
            self.first_read = self.clock()

    def reading_since(self, started: float) -> float:
        """When this run's reading began: the first record read, or `started` (a `clock()`
        reading) when none was read after it."""
        first = self.first_read
        return first if first is not None and first >= started else started

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
