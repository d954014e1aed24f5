"""When silent profiles fall due: one queue of deadlines per worker, instead of a Bytewax
timer per profile; and the silent book, the rescorings that fall due in stream time.

Bytewax's stateful step looks through every key's pending timer at each activation, so a
timer held by each silent profile costs every activation in proportion to the profiles
held. A profile's logic pushes its deadline (wall clock) into its worker's `WakeQueue`
instead; `flows.dataflow.wake_input.WakeSource` takes out what is due and sends each due
profile a `WAKE`, routed by key like an event, so it arrives through ``on_batch``. A held
deadline costs nothing per activation.

The queue is derived state, never snapshotted: a resume refills it as Bytewax rebuilds the
restored profiles (each schedules itself). A deadline that moves later leaves its entry in
place; the profile takes that wake early and pushes again (one early wake per move).
"""

from __future__ import annotations

import heapq
import threading
from typing import Any


class Wake:
    """The item a due profile gets: "time has passed", no record. `Wake.rescore(at)` is
    the silent book's: the rescoring due at event time `at` would cross a threshold, so
    the profile wakes as of `at`, whatever its own deadline."""

    __slots__ = ("at",)

    def __init__(self, at: int = -1) -> None:
        self.at = at  # -1: a plain wake

    @staticmethod
    def rescore(at: int) -> Wake:
        return Wake(at)

    @property
    def forced(self) -> bool:
        return self.at >= 0

    def __reduce__(self) -> str | tuple[Any, ...]:  # across workers `WAKE` stays the one `WAKE`
        return (Wake, (self.at,)) if self.forced else "WAKE"

    def __eq__(self, other: object) -> bool:
        return type(other) is Wake and other.at == self.at

    def __hash__(self) -> int:
        return hash(self.at)

    def __repr__(self) -> str:
        return f"RESCORE({self.at})" if self.forced else "WAKE"


WAKE = Wake()

SLOTS_PER_S = 100  # deadlines are kept to the end of their 10 ms slot


class WakeQueue:
    """Deadlines of the profiles on each worker, per thread: keys in slots of 1 / `SLOTS_PER_S` s
    (a dict of lists), the slots in a heap.

    A Bytewax worker is one thread that runs both a profile's logic and the wake input's
    partition, and a key's wake is routed back to the worker that holds the key, so each
    thread's slots need no lock. A key is due once the end of its slot has passed: never
    early, at most one slot late. A push costs a list append (and a heap push for a new
    slot), a pop a slot's list at a time; a deadline held costs one list entry.
    """

    def __init__(self) -> None:
        # by OS thread id, not `threading.local`: Bytewax's worker threads are not Python's,
        # and what a call stores in a thread-local there is gone at the next activation
        # (keys by slot, the slots' heap, [entries held]: kept so `len` need not count them)
        self._by_thread: dict[int, tuple[dict[int, list[str]], list[int], list[int]]] = {}

    def _slots(self) -> tuple[dict[int, list[str]], list[int], list[int]]:
        thread = threading.get_ident()
        slots = self._by_thread.get(thread)
        if slots is None:
            slots = self._by_thread[thread] = ({}, [], [0])
        return slots

    def push(self, at: float, key: str) -> None:
        keys, order, held_n = self._slots()
        held_n[0] += 1
        slot = -int(-at * SLOTS_PER_S // 1)  # the slot whose end is the first at or after `at`
        held = keys.get(slot)
        if held is None:
            keys[slot] = [key]
            heapq.heappush(order, slot)
        else:
            held.append(key)

    def due(self, now: float) -> list[str]:
        """The keys due by `now` (each once), taken out of this thread's slots."""
        keys, order, held_n = self._slots()
        last = int(now * SLOTS_PER_S // 1)
        if not order or order[0] > last:
            return []
        out: list[str] = []
        pop = heapq.heappop
        while order and order[0] <= last:
            out += keys.pop(pop(order))
        held_n[0] -= len(out)
        return list(dict.fromkeys(out)) if len(out) > 1 else out

    def next_at(self) -> float | None:
        """When the earliest slot held on this thread ends (None: none)."""
        order = self._slots()[1]
        return order[0] / SLOTS_PER_S if order else None

    def __len__(self) -> int:
        """Entries held on this thread (stale ones included), without counting them."""
        return self._slots()[2][0]

    def __getstate__(self) -> dict[str, Any]:  # Bytewax may pickle the flow: no deadlines travel
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


class SilentBook:
    """Scored profiles' next silent rescoring (event time), per worker thread: a heap of
    ``(due, key)`` per source partition, read against that partition's stream time, and
    the key's current ``(due, holder)``.

    The profile step holds each scored profile here (`hold`) instead of waking it for a
    rescoring; the wake input takes what stream time has reached (`due`) and rescores the
    holders in one pass, with no record routed to the profile. Like the `WakeQueue` it is
    derived state, never snapshotted: a resume refills it as the profiles are rebuilt. A
    due time that moves leaves its old heap entry behind, skipped when it comes up.
    """

    def __init__(self) -> None:
        # by OS thread id, for the reason given in `WakeQueue`
        self._by_thread: dict[int, tuple[dict[Any, tuple[int, Any]], dict[int, list[tuple[int, Any]]]]] = {}

    def _shelf(self) -> tuple[dict[Any, tuple[int, Any]], dict[int, list[tuple[int, Any]]]]:
        thread = threading.get_ident()
        shelf = self._by_thread.get(thread)
        if shelf is None:
            shelf = self._by_thread[thread] = ({}, {})
        return shelf

    def hold(self, key: Any, partition: int, due_ms: int, holder: Any) -> None:
        """`holder` is next due at event time `due_ms` (< 0: not held)."""
        rows, heaps = self._shelf()
        row = rows.get(key)
        if due_ms < 0:
            if row is not None:
                del rows[key]
            return
        if row is not None and row[0] == due_ms and row[1] is holder:
            return
        rows[key] = (due_ms, holder)
        heap = heaps.get(partition)
        if heap is None:
            heap = heaps[partition] = []
        heapq.heappush(heap, (due_ms, key))

    def forget(self, key: Any) -> None:
        self._shelf()[0].pop(key, None)

    def due(self, now_ms: Any) -> list[Any]:
        """The holders whose due time the stream time of their partition (`now_ms(p)`)
        has reached, each taken out (a rescored holder holds itself again)."""
        rows, heaps = self._shelf()
        out: list[Any] = []
        pop = heapq.heappop
        for partition, heap in heaps.items():
            if not heap:
                continue
            now = now_ms(partition)
            while heap and heap[0][0] <= now:
                due_ms, key = pop(heap)
                row = rows.get(key)
                if row is not None and row[0] == due_ms:
                    del rows[key]
                    out.append(row[1])
        return out

    def __len__(self) -> int:
        """Holders on this thread."""
        return len(self._shelf()[0])

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
