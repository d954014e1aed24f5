"""Feature states from snapshots that kept one object per feature, restored into the plain
states of `flows.features.aggregates` (which `restored` converts them to).

Old snapshots name these classes as ``flows.features.aggregates._Count`` and so on; that
module re-exports them. They stay interpreted (this module is not compiled): unpickling
fills their slots the way plain Python classes allow.
"""

from __future__ import annotations

from array import array
from typing import Any


class _Restored:
    """A feature's state as unpickled from a snapshot that kept one object per feature."""

    __slots__ = ()

    def plain(self) -> Any:
        raise NotImplementedError


class _Buckets(_Restored):
    __slots__ = ("acc", "idx", "n", "total")
    acc: list[float]
    idx: list[int]
    total: float

    def plain(self) -> Any:
        out = array("d", [self.total])
        for b, a in zip(self.idx, self.acc, strict=True):
            out.append(b)
            out.append(a)
        return out


class _Count(_Buckets):
    __slots__ = ()

    def plain(self) -> Any:
        out = array("d")
        for b, a in zip(self.idx, self.acc, strict=True):
            out.append(b)
            out.append(a)
        return out


class _Sum(_Buckets):
    __slots__ = ()


class _Trend(_Restored):
    __slots__ = ("inner",)
    inner: _Buckets

    def plain(self) -> Any:
        return self.inner.plain()


class _Avg(_Restored):
    __slots__ = ("counts", "sums")
    counts: _Buckets
    sums: _Buckets

    def plain(self) -> Any:
        c, s = self.counts, self.sums
        out = array("d", [c.total, s.total])
        for b, n, x in zip(c.idx, c.acc, s.acc, strict=True):  # both saw the same events
            out.extend((b, n, x))
        return out


class _Extreme(_Restored):
    __slots__ = ("buckets", "pick")
    buckets: dict[int, float]

    def plain(self) -> Any:
        out = array("d")
        for b, x in self.buckets.items():
            out.extend((b, x))
        return out


class _Distinct(_Restored):
    __slots__ = ("buckets",)
    buckets: dict[int, set[Any]]

    def plain(self) -> Any:
        return [x for b, values in self.buckets.items() for x in (b, values)]


class _Last(_Restored):
    __slots__ = ("ts", "v")
    ts: int
    v: float

    def plain(self) -> Any:
        return array("d", [self.ts, self.v])


class _Recency(_Restored):
    __slots__ = ("ts",)
    ts: int

    def plain(self) -> Any:
        return array("d", [self.ts])


class _FirstSeen(_Recency):
    __slots__ = ()


class _Decayed(_Restored):
    __slots__ = ("acc", "ref")
    acc: float
    ref: int

    def plain(self) -> Any:
        return array("d", [self.acc, self.ref])
