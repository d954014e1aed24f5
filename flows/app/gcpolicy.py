"""The garbage collector's policy while a dataflow runs: collect the young generation rarely.

CPython's cycle collector scans the young generation every 700 net container
allocations and, with a large heap of long-lived per-profile state, the old generation
every few seconds. On the ingest path that cost ~9 % of the worker's time and paused it
for up to 200 ms per full collection, which is what the tail of event-to-ClickHouse
latency was made of; on the feature path it was ~20 % of the per-event cost (86 -> 69
µs). The engine's records die by reference counting, not by the cycle collector, so
collecting less often frees the same memory; what it changes is how long an unreachable
cycle waits (until `young` more net container allocations).

Everything allocated before the flow starts (modules, settings, models, clients) is
frozen out of the scans (`gc.freeze`): it lives as long as the process. So is whatever
survives a full collection while the flow runs, chiefly the profiles' state: a full
collection otherwise walks every profile's objects (about eight each), which paused the
worker 1.7 s with a million profiles held; frozen, the next one walks only what was
allocated since. Frozen objects are still freed when their last reference goes (an
evicted profile); only a reference cycle among them that becomes garbage stays until
the flow ends.

>>> import gc
>>> before = gc.get_threshold()
>>> with collect_rarely(50_000):
...     gc.get_threshold()
(50000, 5, 80)
>>> gc.get_threshold() == before
True
>>> with collect_rarely(0):   # 0: Python's own policy
...     gc.get_threshold() == before
True
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# CPython collects a generation once the collections of the one below since its last
# exceed its threshold (Python: 10 and 10). A middle collection walks what survived the
# young ones since the last, so its pause grows with that count: 281 ms at 20, 68 - 112
# ms at 5 (every sixth young collection) in the synthetic pipeline, the total the same.
# A full collection is considered about every 490 young ones (6 x 81; 441 at 20 and 20),
# still subject to CPython's own 25 %-growth rule.
_MIDDLE = 5
_OLD = 80


@contextmanager
def collect_rarely(young: int) -> Iterator[None]:
    """Run the body with the young generation collected every `young` net allocations.

    Restores the thresholds and unfreezes on exit (tests run many flows in one process).
    `young` = 0 leaves Python's policy untouched.
    """
    if young <= 0:
        yield
        return
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, _MIDDLE, _OLD)
    gc.callbacks.append(_freeze_survivors)
    try:
        yield
    finally:
        gc.callbacks.remove(_freeze_survivors)
        gc.set_threshold(*previous)
        gc.unfreeze()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After a full collection, take what survived it out of the next ones' scans."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()
