"""What Bytewax itself costs per timer wake of a keyed state, with nothing in the logic, and
what keys merely holding a timer cost.

1. `stateful_batch` with K keys whose `notify_at` is always now: every activation wakes
   every key. Prints the process CPU per wake (a) when a wake emits nothing and (b) when it
   emits one item that goes through `key_rm`, a `flat_map` and a sink, as the profile
   step's do; set beside the profile step's own CPU per wake in a replay
   (`docs/per-event-path.md`), it says whether waking fewer keys for more profiles each
   (shards) would pay.
2. N idle keys (one item each, then nothing), each holding a deadline a year ahead (as a
   silent scored profile does) or none, then 20,000 items over 1,000 other keys in
   batches of 100: the wall time per activation of the step over those batches. Bytewax
   looks through every pending timer at each activation, so with a Bytewax timer per key
   this grows with N; the engine keeps its deadlines in the wake queue
   (`flows.dataflow.wakes`), which looks only at the earliest. `--idle` sets the N
   (10,000 and 1,000,000).

Not a test.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from flows.dataflow.wake_input import InputEnds, WakeSource, watched
from flows.dataflow.wakes import WakeQueue


class _Discard(StatelessSinkPartition[object]):
    def write_batch(self, items: list[object]) -> None:
        pass


class _DiscardSink(DynamicSink[object]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard()


class _Timer(StatefulBatchLogic[str, tuple[str, int], None]):
    """Wakes at every activation until `end` (wall clock); counts its wakes."""

    def __init__(self, end: float, emit: bool, wakes: list[int]) -> None:
        self._at: datetime | None = datetime.now(UTC)
        self._end = end
        self._out = [("x", 1)] if emit else []
        self._wakes = wakes

    def on_batch(self, values: list[str]) -> tuple[list[tuple[str, int]], bool]:
        return [], False

    def on_notify(self) -> tuple[list[tuple[str, int]], bool]:
        self._wakes[0] += 1
        if time.time() > self._end:
            self._at = None
            return [], True
        self._at = datetime.now(UTC)
        return self._out, False

    def notify_at(self) -> datetime | None:
        return self._at

    def snapshot(self) -> None:
        return None


def per_wake(keys: int, seconds: float, emit: bool) -> tuple[int, float]:
    """(wakes, process CPU µs per wake) of `keys` timers run for `seconds`."""
    wakes = [0]
    end = time.time() + seconds
    flow = Dataflow("wakes")
    keyed = op.key_on("key", op.input("in", flow, TestingSource([str(i) for i in range(keys)])), str)
    out = op.key_rm("unkey", op.stateful_batch("timers", keyed, lambda _: _Timer(end, emit, wakes)))
    op.output("out", op.flat_map("items", out, lambda x: [x]), _DiscardSink())
    cpu = time.process_time()
    run_main(flow)
    return wakes[0], (time.process_time() - cpu) / max(wakes[0], 1) * 1e6


class _BatchesPart(StatelessSourcePartition[tuple[str, str]]):
    def __init__(self, batches: list[list[tuple[str, str]]]) -> None:
        self._batches = iter(batches)

    def next_batch(self) -> list[tuple[str, str]]:
        return next(self._batches)  # StopIteration ends the input


class _Batches(DynamicSource[tuple[str, str]]):
    """These batches, in order, on worker 0."""

    def __init__(self, batches: list[list[tuple[str, str]]]) -> None:
        self._batches = batches

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BatchesPart:
        return _BatchesPart(self._batches if worker_index == 0 else [])


_FAR = datetime(9999, 1, 1, tzinfo=UTC)
_TAIL, _BATCH = 20_000, 100
_SPREAD_S = 28 * 86_400  # queue entries spread over the rescorings' back-off, about one slot each
HELD = ("none", "timer", "queue")  # what each idle key holds: nothing, a Bytewax timer, a queue entry


class _Idle(StatefulBatchLogic[object, None, None]):
    """Holds a far deadline as a Bytewax timer, in the wake queue, or none; times the
    tail's first and last item."""

    def __init__(self, held: str, queue: WakeQueue, marks: dict[str, float]) -> None:
        self._at = _FAR if held == "timer" else None
        self._queue = queue if held == "queue" else None
        self._marks = marks

    def on_batch(self, values: list[object]) -> tuple[list[None], bool]:
        v = values[0]
        if v in ("first", "last"):
            self._marks[str(v)] = time.perf_counter()
        elif self._queue is not None and type(v) is tuple:  # an idle key: (f"idle{i}", "x")
            i = int(v[0][4:])
            self._queue.push(_FAR.timestamp() + i * 7.919 % _SPREAD_S, v[0])
        return [], False

    def notify_at(self) -> datetime | None:
        return self._at

    def snapshot(self) -> None:
        return None


def per_activation(idle: int, held: str) -> float:
    """Wall ms per activation over the tail's batches, after `idle` keys that each hold a
    far deadline (`held`, one of `HELD`). The flow has the engine's wake input either way."""
    marks: dict[str, float] = {}
    tail = [
        (f"hot{i % 1000}", "first" if i == 0 else "last" if i == _TAIL - 1 else "x") for i in range(_TAIL)
    ]
    idle_keys = [(f"idle{i}", (f"idle{i}", "x")) for i in range(idle)]
    # the idle keys in large batches (each activation looks through the timers held so far)
    batches: list[list[tuple[str, object]]] = [idle_keys[i : i + 100_000] for i in range(0, idle, 100_000)]
    batches += [tail[i : i + _BATCH] for i in range(0, _TAIL, _BATCH)]
    flow = Dataflow("idle")
    queue, ends = WakeQueue(), InputEnds()
    keyed = op.key_on("key", op.input("in", flow, watched(_Batches(batches), ends)), lambda kv: kv[0])
    values = op.merge(
        "with_wakes",
        op.map_value("value", keyed, lambda kv: kv[1]),
        op.input("wakes", flow, WakeSource(queue, ends)),
    )
    out = op.key_rm("unkey", op.stateful_batch("idle", values, lambda _: _Idle(held, queue, marks)))
    op.output("out", out, _DiscardSink())
    run_main(flow)
    return (marks["last"] - marks["first"]) / (_TAIL / _BATCH - 1) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--idle", type=int, nargs="+", default=[10_000, 1_000_000])
    args = ap.parse_args()
    for emit in (False, True):
        n, us = per_wake(args.keys, args.seconds, emit)
        what = "one item out per wake" if emit else "nothing out"
        print(f"{args.keys:,} keys, {what}: {n:,} wakes, {us:.2f} µs CPU per wake")
    for idle in args.idle:
        ms = {held: per_activation(idle, held) for held in HELD}
        print(
            f"{idle:,} idle keys, ms per activation: {ms['none']:.2f} holding nothing, "
            f"{ms['queue']:.2f} a wake-queue entry each ({ms['queue'] / ms['none']:.1f}x), "
            f"{ms['timer']:.2f} a Bytewax timer each ({ms['timer'] / ms['none']:.1f}x)"
        )


if __name__ == "__main__":
    main()
