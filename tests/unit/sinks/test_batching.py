"""BatchBuffer: size/age batching, bounded memory (backpressure), loud failure."""

from __future__ import annotations

import threading
import time

import pytest

from flows.core.errors import SinkError
from sinks.batching import BatchBuffer


def test_flushes_by_size_in_batches_of_at_most_flush_rows():
    batches: list[list[int]] = []
    b = BatchBuffer("t-size", batches.append, flush_rows=10, flush_interval_s=60, max_rows=100)
    b.add(list(range(25)))
    b.close()
    assert [x for batch in batches for x in batch] == list(range(25))
    assert max(len(batch) for batch in batches) <= 10


def test_flushes_by_age_without_more_input():
    batches: list[list[int]] = []
    done = threading.Event()

    def write(rows: list[int]) -> None:
        batches.append(rows)
        done.set()

    b = BatchBuffer("t-age", write, flush_rows=1000, flush_interval_s=0.05, max_rows=2000)
    b.add([1, 2])
    assert done.wait(5), "an old batch must be written without new rows arriving"
    assert batches == [[1, 2]]
    b.close()


def test_backpressure_blocks_writers_when_full():
    gate = threading.Event()
    written: list[int] = []

    def slow(rows: list[int]) -> None:
        gate.wait(10)
        written.extend(rows)

    b = BatchBuffer("t-full", slow, flush_rows=5, flush_interval_s=0.01, max_rows=10)
    b.add(list(range(10)))  # fills the buffer; the writer is stuck on the gate
    blocked = threading.Event()
    finished = threading.Event()

    def producer() -> None:
        blocked.set()
        b.add([99])
        finished.set()

    t = threading.Thread(target=producer)
    t.start()
    blocked.wait(5)
    time.sleep(0.2)
    assert not finished.is_set(), "add() must wait while the buffer is full"
    gate.set()
    assert finished.wait(5)
    t.join()
    b.close()
    assert sorted(written) == [*range(10), 99]


def test_a_failed_write_surfaces_on_the_next_call():
    def broken(rows: list[int]) -> None:
        raise SinkError("disk on fire")

    b = BatchBuffer("t-fail", broken, flush_rows=1, flush_interval_s=0.01, max_rows=10)
    b.add([1])
    with pytest.raises(SinkError, match="disk on fire"):
        for _ in range(100):
            time.sleep(0.02)
            b.add([2])
    with pytest.raises(SinkError):
        b.close()
