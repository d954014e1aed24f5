"""What Bytewax itself costs per timer wake of a keyed state, with nothing in the logic.

`stateful_batch` with K keys whose `notify_at` is always now: every activation wakes every
key. Prints the process CPU per wake (a) when a wake emits nothing and (b) when it emits one
item that goes through `key_rm`, a `flat_map` and a sink, as the profile step's do; set
beside the profile step's own CPU per wake in a replay (`docs/per-event-path.md`), it says
whether waking fewer keys for more profiles each (shards) would pay. Not a test.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    for emit in (False, True):
        n, us = per_wake(args.keys, args.seconds, emit)
        what = "one item out per wake" if emit else "nothing out"
        print(f"{args.keys:,} keys, {what}: {n:,} wakes, {us:.2f} µs CPU per wake")


if __name__ == "__main__":
    main()
