"""When silent profiles fall due: one heap of deadlines per worker, instead of a Bytewax
timer per profile.

Bytewax's stateful step looks through every key's pending timer at each activation, so a
timer held by each silent profile costs every activation in proportion to the profiles
held. A profile's logic pushes its deadline (wall clock) into its worker's `WakeQueue`
instead; `flows.dataflow.wake_input.WakeSource` pops what is due and sends each due
profile a `WAKE`, routed by key like an event, so it arrives through ``on_batch``. A held
deadline costs nothing per activation, a wake a heap pop.

The queue is derived state, never snapshotted: a resume refills it as Bytewax rebuilds the
restored profiles (each schedules itself). A deadline that moves later leaves its entry in
place; the profile takes that wake early and pushes again (one early wake per move).
"""

from __future__ import annotations

import heapq
import threading
from typing import Any


class Wake:
    """The item a due profile gets: "time has passed", no record."""

    __slots__ = ()

    def __reduce__(self) -> str:  # across workers it unpickles to the one `WAKE`
        return "WAKE"

    def __repr__(self) -> str:
        return "WAKE"


WAKE = Wake()


class WakeQueue:
    """Deadlines of the profiles on each worker: ``(wall time, key)`` in a heap per thread.

    A Bytewax worker is one thread that runs both a profile's logic and the wake input's
    partition, and a key's wake is routed back to the worker that holds the key, so each
    thread's heap needs no lock.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _heap(self) -> list[tuple[float, str]]:
        try:
            heap: list[tuple[float, str]] = self._local.heap
        except AttributeError:
            heap = self._local.heap = []
        return heap

    def push(self, at: float, key: str) -> None:
        heapq.heappush(self._heap(), (at, key))

    def due(self, now: float) -> list[str]:
        """The keys due by `now` (each once), taken out of this thread's heap."""
        heap = self._heap()
        if not heap or heap[0][0] > now:
            return []
        keys: dict[str, None] = {}
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            keys[pop(heap)[1]] = None
        return list(keys)

    def next_at(self) -> float | None:
        """The earliest deadline held on this thread (None: none)."""
        heap = self._heap()
        return heap[0][0] if heap else None

    def __len__(self) -> int:
        return len(self._heap())

    def __getstate__(self) -> dict[str, Any]:  # Bytewax may pickle the flow: no heaps travel
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
