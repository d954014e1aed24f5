"""One feature's per-profile state, one class per aggregation: bounded, picklable, pure.

Windowed aggregations keep sparse buckets (only those that saw an event); `expire` drops
the buckets no read or write can reach any more, so state follows recent activity.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from flows.core.conditions import is_number
from flows.features.declarations import FeatureDef


class Aggregate:
    """One feature's per-profile state. Subclasses keep only what their aggregation needs."""

    __slots__ = ()

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        raise NotImplementedError

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        raise NotImplementedError

    def expire(self, first: int) -> bool:
        """Drop buckets below index `first` (no read or write can reach them any more);
        True when nothing is left, so the whole state can go."""
        return False


class _Buckets(Aggregate):
    """Sparse sorted buckets [(index, acc)] + running totals, for count/sum/avg/trend."""

    __slots__ = ("acc", "idx", "n", "total")

    def __init__(self) -> None:
        self.idx: list[int] = []
        self.acc: list[float] = []
        self.total = 0.0
        self.n = 0  # count of values, for avg

    def _slot(self, b: int) -> int:
        idx = self.idx
        if idx and idx[-1] == b:
            return len(idx) - 1
        if not idx or idx[-1] < b:
            idx.append(b)
            self.acc.append(0.0)
            return len(idx) - 1
        i = bisect_left(idx, b)
        if i < len(idx) and idx[i] == b:
            return i
        idx.insert(i, b)
        self.acc.insert(i, 0.0)
        return i

    def evict(self, keep_from: int) -> None:
        """Drop buckets with index < keep_from (outside every window still readable)."""
        idx = self.idx
        k = 0
        while k < len(idx) and idx[k] < keep_from:
            k += 1
        if k:
            del idx[:k]
            del self.acc[:k]
            # Recomputed, not subtracted: subtraction would leave float residue behind.
            self.total = math.fsum(self.acc)

    def expire(self, first: int) -> bool:
        self.evict(first)
        return not self.idx

    def sum_from(self, first: int, last: int) -> float:
        """Sum of accumulators with first <= index <= last."""
        idx, acc = self.idx, self.acc
        if not idx:
            return 0.0
        if first <= idx[0] and last >= idx[-1]:
            return self.total
        return math.fsum(a for b, a in zip(idx, acc, strict=True) if first <= b <= last)


class _Count(_Buckets):
    __slots__ = ()

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        self.evict(horizon_bucket - d.buckets + 1)
        w = d.bucket_ms
        b = ts // w
        if b <= horizon_bucket - d.buckets:
            return
        self.acc[self._slot(b)] += 1.0
        self.total += 1.0

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        top = as_of // d.bucket_ms
        return self.sum_from(top - d.buckets + 1, top)


class _Sum(_Count):
    __slots__ = ()

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if not is_number(v):
            return
        self.evict(horizon_bucket - d.buckets + 1)
        b = ts // d.bucket_ms
        if b <= horizon_bucket - d.buckets:
            return
        self.acc[self._slot(b)] += v
        self.total += v


class _Avg(Aggregate):
    __slots__ = ("counts", "sums")

    def __init__(self) -> None:
        self.counts = _Count()
        self.sums = _Sum()

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if is_number(v):
            self.counts.add(d, ts, v, horizon_bucket)
            self.sums.add(d, ts, v, horizon_bucket)

    def expire(self, first: int) -> bool:
        return self.counts.expire(first) & self.sums.expire(first)

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        n = self.counts.value(d, as_of)
        if not n:
            return None
        return self.sums.value(d, as_of) / n  # type: ignore[operator]


def _expire_keys(buckets: dict[int, Any], first: int) -> bool:
    for old in [k for k in buckets if k < first]:
        del buckets[old]
    return not buckets


def _live_bucket(buckets: dict[int, Any], d: FeatureDef, ts: int, horizon_bucket: int) -> int | None:
    """The bucket of `ts`, or None when it is already outside the window; drops the
    buckets that left the window (dict-of-buckets aggregations)."""
    first = horizon_bucket - d.buckets + 1
    b = ts // d.bucket_ms
    if b < first:
        return None
    for old in [k for k in buckets if k < first]:
        del buckets[old]
    return b


class _Extreme(Aggregate):
    """min or max per bucket; the window's extreme is recomputed over live buckets."""

    __slots__ = ("buckets", "pick")

    def __init__(self, pick: Callable[[float, float], float]) -> None:
        self.buckets: dict[int, float] = {}
        self.pick = pick

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if not is_number(v):
            return
        b = _live_bucket(self.buckets, d, ts, horizon_bucket)
        if b is None:
            return
        cur = self.buckets.get(b)
        self.buckets[b] = float(v) if cur is None else self.pick(cur, float(v))

    def expire(self, first: int) -> bool:
        return _expire_keys(self.buckets, first)

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        top = as_of // d.bucket_ms
        live = [v for b, v in self.buckets.items() if top - d.buckets < b <= top]
        if not live:
            return None
        out = live[0]
        for v in live[1:]:
            out = self.pick(out, v)
        return out


class _Distinct(Aggregate):
    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: dict[int, set[Any]] = {}

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if v is None or isinstance(v, dict | list):
            return
        b = _live_bucket(self.buckets, d, ts, horizon_bucket)
        if b is None:
            return
        values = self.buckets.setdefault(b, set())
        if len(values) < d.max_distinct:
            values.add(float(v) if is_number(v) else v)

    def expire(self, first: int) -> bool:
        return _expire_keys(self.buckets, first)

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        top = as_of // d.bucket_ms
        live = [s for b, s in self.buckets.items() if top - d.buckets < b <= top]
        if not live:
            return 0.0
        if len(live) == 1:
            return float(len(live[0]))
        return float(len(set().union(*live)))


class _Trend(Aggregate):
    __slots__ = ("inner",)

    def __init__(self) -> None:
        self.inner = _Buckets()

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if d.of == "sum":
            if not is_number(v):
                return
            amount = float(v)
        else:
            amount = 1.0
        first = horizon_bucket - 2 * d.buckets + 1
        self.inner.evict(first)
        b = ts // d.bucket_ms
        if b < first:
            return
        self.inner.acc[self.inner._slot(b)] += amount
        self.inner.total += amount

    def expire(self, first: int) -> bool:
        return self.inner.expire(first)

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        top = as_of // d.bucket_ms
        n = d.buckets
        return self.inner.sum_from(top - n + 1, top) - self.inner.sum_from(top - 2 * n + 1, top - n)


class _Last(Aggregate):
    __slots__ = ("ts", "v")

    def __init__(self) -> None:
        self.ts = -1
        self.v = 0.0

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if is_number(v) and ts >= self.ts:
            self.ts, self.v = ts, float(v)

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        return self.v if self.ts >= 0 else None


class _Recency(Aggregate):
    __slots__ = ("ts",)

    def __init__(self) -> None:
        self.ts = -1

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if ts > self.ts:
            self.ts = ts

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        return (as_of - self.ts) / d.unit_ms if self.ts >= 0 else None


class _FirstSeen(Aggregate):
    __slots__ = ("ts",)

    def __init__(self) -> None:
        self.ts = -1

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if self.ts < 0 or ts < self.ts:
            self.ts = ts

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        return self.ts / 1000 if self.ts >= 0 else None


class _Decayed(Aggregate):
    __slots__ = ("acc", "ref")

    def __init__(self) -> None:
        self.acc = 0.0
        self.ref = -1

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if d.value is None:
            amount = 1.0
        elif is_number(v):
            amount = float(v)
        else:
            return
        if self.ref < 0:
            self.acc, self.ref = amount, ts
        elif ts >= self.ref:
            self.acc = self.acc * 2.0 ** (-(ts - self.ref) / d.half_life_ms) + amount
            self.ref = ts
        else:
            self.acc += amount * 2.0 ** (-(self.ref - ts) / d.half_life_ms)

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        if self.ref < 0:
            return 0.0
        return self.acc * 2.0 ** (-(as_of - self.ref) / d.half_life_ms)


STATE_TYPES: dict[str, Callable[[], Aggregate]] = {
    "count": _Count, "sum": _Sum, "avg": _Avg, "min": lambda: _Extreme(min),
    "max": lambda: _Extreme(max), "distinct": _Distinct, "trend": _Trend, "last": _Last,
    "recency": _Recency, "first_seen": _FirstSeen, "decayed_sum": _Decayed,
}  # fmt: skip


# The value of a feature no event has touched yet (None: absent).
EMPTY_VALUE = {"count": 0.0, "sum": 0.0, "distinct": 0.0, "trend": 0.0, "decayed_sum": 0.0}
