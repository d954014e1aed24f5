"""The collector's policy while a flow runs: what survives a full collection is not
scanned again, and garbage cycles made since are still collected."""

from __future__ import annotations

import gc
import weakref

from flows.app.gcpolicy import collect_rarely


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_survivors_of_a_full_collection_leave_the_scans_and_new_cycles_are_still_freed() -> None:
    with collect_rarely(50_000):
        kept = [[i] for i in range(10_000)]  # long-lived state: tracked containers
        before = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() >= before + len(kept), "the survivors are frozen"
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        dead = weakref.ref(a)
        del a, b
        gc.collect()
        assert dead() is None, "a cycle made after the freeze is collected"
        assert len(kept) == 10_000
    assert gc.get_freeze_count() == 0, "unfrozen when the flow ends"
