"""Per-aggregation kernels: stateless functions over one feature's plain per-profile state.

A profile keeps no object per feature. Every aggregation but `distinct` keeps its numbers
in one *segment* of the profile's ``array('d')`` (`flows.features.windows`): the ``n``
numbers from ``p``. A `distinct` feature keeps a list of buckets and the sorted 64-bit
digests of their values instead (an object state; ``p`` and ``n`` unused). The plan picks one `Kernel`
per feature; it adds an event to that state, reads its value as of a time, and evicts
the buckets no read or write can reach any more.

Segment layouts (``b`` a bucket index):

===================  ======================================================================
count                ``(b, count)`` pairs by ascending ``b``
sum, trend           total, then ``(b, acc)`` pairs by ascending ``b``
avg                  count total, sum total, then ``(b, count, sum)`` by ascending ``b``
min, max             ``(b, extreme)`` pairs in the order their buckets were first seen
last                 ts, value (ts -1: no value yet)
recency, first_seen  ts (-1: no event yet)
age                  ts of the oldest matching event (-1: none yet)
decayed_sum          acc, reference ts (-1: no event yet)
lifetime count       count
lifetime sum         sum
lifetime avg         count, sum
===================  ======================================================================

Kernels take times as floats: timestamps and bucket indices are integers below 2**53,
exact as doubles, and double-with-double arithmetic is the fast path. Running totals
are recomputed with `math.fsum` whenever buckets leave, so no float residue stays behind;
a count keeps none, its sums being exact integers in any order.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from flows.core.conditions import is_number
from flows.core.digests import key64
from flows.features.declarations import FeatureDef
from flows.features.legacy_states import (  # noqa: F401  # old snapshots name them here
    _Avg,
    _Buckets,
    _Count,
    _Decayed,
    _Distinct,
    _Extreme,
    _FirstSeen,
    _Last,
    _Recency,
    _Restored,
    _Sum,
    _Trend,
)


class Kernel:
    """How one feature's state is kept and used: with `fresh` set, as the segment at ``p``
    of ``n`` numbers in the profile's array; otherwise as an object (a list).

    One subclass per aggregation, its parameters in attributes: compiled callers reach
    ``add`` and ``value`` through the class's method table with the numbers unboxed (a
    generic call boxes each one and parses its arguments)."""

    fresh: array[float] | None = None  # a new state's segment
    earliest = False  # the state is one time, the earliest seen: a later event moves nothing
    head = 0  # numbers before the buckets
    step = 0  # numbers per bucket (0: unwindowed or object state)
    windowed = False  # whether `evict` applies

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        """Fold an event (its time, its value, the newest accepted time) into the state;
        the segment's new length."""
        raise NotImplementedError

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        """The value as of `as_of`; None when absent."""
        raise NotImplementedError

    def evict(self, data: Any, p: int, n: int, first: float) -> int:
        """Drop the buckets below `first`; the segment's new length (== head: no bucket
        left; for an object state, the number of buckets left). Windowed kernels only."""
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        """Two states (a segment's numbers or an object state each) into the state of both
        streams of events together (two persons' features at a merge); neither is changed."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# Sorted buckets: ``head`` totals (one per column), then ``(b, column...)`` by ascending b.
# count: head 0, step 2 (its window sums are exact integers, no running total needed);
# sum, trend: head 1, step 2; avg: head 2, step 3 (count and sum columns).
# --------------------------------------------------------------------------------------


def sorted_evict(data: array[float], p: int, n: int, first: float, head: int, step: int) -> int:
    """evict for sorted buckets: drop those below `first`, recomputing the column totals."""
    q = p + head
    end = p + n
    k = q
    while k < end and data[k] < first:
        k += step
    if k > q:
        del data[q:k]
        end -= k - q
        # Recomputed, not subtracted: subtraction would leave float residue behind.
        for c in range(head):
            data[p + c] = math.fsum(data[q + 1 + c : end : step])
    return end - p


def sorted_merge(a: array[float], b: array[float], head: int, step: int) -> array[float]:
    """merge for sorted buckets: a bucket in both adds column by column; totals recomputed."""
    out = array("d", bytes(8 * head))
    i, j, na, nb = head, head, len(a), len(b)
    while i < na or j < nb:
        if j >= nb or (i < na and a[i] < b[j]):
            out.extend(a[i : i + step])
            i += step
        elif i >= na or b[j] < a[i]:
            out.extend(b[j : j + step])
            j += step
        else:
            out.append(a[i])
            out.extend([a[i + c] + b[j + c] for c in range(1, step)])
            i += step
            j += step
    for c in range(head):
        out[c] = math.fsum(out[head + 1 + c :: step])
    return out


class WindowedKernel(Kernel):
    """Buckets each `w` ms wide, `nb` to a window."""

    def __init__(self, d: FeatureDef) -> None:
        self.w = float(d.bucket_ms)
        self.nb = float(d.buckets)
        self.windowed = True


class SortedKernel(WindowedKernel):
    """Sorted buckets with their column totals ahead of them."""

    def evict(self, data: Any, p: int, n: int, first: float) -> int:
        return sorted_evict(data, p, n, first, self.head, self.step)

    def merge(self, a: Any, b: Any) -> Any:
        return sorted_merge(a, b, self.head, self.step)


_ZEROS = {2: array("d", [0.0, 0.0]), 3: array("d", [0.0, 0.0, 0.0])}


def _slot(data: array[float], p: int, n: int, b: float, head: int, step: int) -> int:
    """Where bucket `b` is in the segment; when it is new, it is inserted (zeros) and its
    position is returned as ``~position`` (negative), the segment `step` longer."""
    q = p + head
    k = p + n - step  # the newest bucket: most events land in or after it
    while k >= q and data[k] > b:
        k -= step
    if k >= q and data[k] == b:
        return k
    k += step
    data[k:k] = _ZEROS[step]
    data[k] = b
    return ~k


class CountKernel(SortedKernel):
    def __init__(self, d: FeatureDef) -> None:
        super().__init__(d)
        self.fresh = array("d")
        self.step = 2

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        w = self.w
        top = newest // w
        k = p + n - 2
        if ts == newest and n and data[k] == top:
            # The newest event, in the newest bucket: that bucket was written while the
            # window started where it starts now, and that add evicted; nothing to evict.
            data[k + 1] += 1.0
            return n
        first = top - self.nb + 1
        if n and data[p] < first:
            n = sorted_evict(data, p, n, first, 0, 2)
        b = ts // w
        if b < first:
            return n
        k = _slot(data, p, n, b, 0, 2)
        if k < 0:
            k = ~k
            n += 2
        data[k + 1] += 1.0
        return n

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        if not n:
            return 0.0
        nb = self.nb
        top = as_of // self.w
        end = p + n
        if top >= data[end - 2]:  # every bucket at or before as_of: the window is a suffix
            lo = top - nb
            if lo < data[p]:
                return data[p + 1] if n == 2 else sum(data[p + 1 : end : 2])
            k = end - 2
            while k >= p and data[k] > lo:
                k -= 2
            return sum(data[k + 3 : end : 2]) if k + 2 < end else 0.0
        return math.fsum([data[k + 1] for k in range(p, end, 2) if top - nb < data[k] <= top])


class SummedKernel(SortedKernel):
    """A bucket sum with a running total (of 1 per event, or of the event's number) that
    any read or write reaches `keep` buckets back."""

    def __init__(self, d: FeatureDef, keep: float, numeric: bool) -> None:
        super().__init__(d)
        self.fresh = array("d", [0.0])
        self.head, self.step = 1, 2
        self.keep = keep
        self.numeric = numeric

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if self.numeric:
            if not is_number(v):
                return n
            amount: float = v
        else:
            amount = 1.0
        w = self.w
        top = newest // w
        k = p + n - 2
        if ts == newest and n > 1 and data[k] == top:  # see CountKernel
            data[k + 1] += amount
            data[p] += amount
            return n
        first = top - self.keep + 1
        if n > 1 and data[p + 1] < first:
            n = sorted_evict(data, p, n, first, 1, 2)
        b = ts // w
        if b < first:
            return n
        k = _slot(data, p, n, b, 1, 2)
        if k < 0:
            k = ~k
            n += 2
        data[k + 1] += amount
        data[p] += amount
        return n


def _total(data: array[float], p: int, n: int, first: float, last: float) -> float:
    """The sum of the (b, acc) pairs' accs with first <= b <= last, after one total."""
    if n == 1:
        return 0.0
    end = p + n
    if first <= data[p + 1] and last >= data[end - 2]:
        return data[p]
    i, j = p + 1, end  # the buckets are sorted: those in [first, last] are one run
    while i < j and data[i] < first:
        i += 2
    while j > i and data[j - 2] > last:
        j -= 2
    return math.fsum(data[i + 1 : j : 2]) if i < j else 0.0


class SumKernel(SummedKernel):
    def __init__(self, d: FeatureDef) -> None:
        super().__init__(d, float(d.buckets), True)

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        if n == 1:
            return 0.0
        nb = self.nb
        top = as_of // self.w
        if top - nb < data[p + 1] and top >= data[p + n - 2]:
            return data[p]
        return _total(data, p, n, top - nb + 1, top)


class TrendKernel(SummedKernel):
    def __init__(self, d: FeatureDef) -> None:
        super().__init__(d, 2.0 * d.buckets, d.of == "sum")

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        nb = self.nb
        top = as_of // self.w
        return _total(data, p, n, top - nb + 1, top) - _total(data, p, n, top - 2 * nb + 1, top - nb)


class AvgKernel(SortedKernel):
    def __init__(self, d: FeatureDef) -> None:
        super().__init__(d)
        self.fresh = array("d", [0.0, 0.0])
        self.head, self.step = 2, 3

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if not is_number(v):
            return n
        w = self.w
        first = newest // w - self.nb + 1
        if n > 2 and data[p + 2] < first:
            n = sorted_evict(data, p, n, first, 2, 3)
        b = ts // w
        if b < first:
            return n
        k = _slot(data, p, n, b, 2, 3)
        if k < 0:
            k = ~k
            n += 3
        data[k + 1] += 1.0
        data[p] += 1.0
        data[k + 2] += v
        data[p + 1] += v
        return n

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        nb = self.nb
        top = as_of // self.w
        count = _column(data, p, n, top - nb + 1, top, 1)
        if not count:
            return None
        return _column(data, p, n, top - nb + 1, top, 2) / count


def _column(data: array[float], p: int, n: int, first: float, last: float, c: int) -> float:
    """An avg's column `c` (1: count, 2: sum) over the buckets with first <= b <= last."""
    if n == 2:
        return 0.0
    if first <= data[p + 2] and last >= data[p + n - 3]:
        return data[p + c - 1]
    return math.fsum([data[k + c] for k in range(p + 2, p + n, 3) if first <= data[k] <= last])


# --------------------------------------------------------------------------------------
# min / max: one extreme per bucket, buckets in first-seen order; the window's extreme is
# folded over its live buckets in that order (so ties keep the first, e.g. 0.0 vs -0.0).
# --------------------------------------------------------------------------------------


def _evict_unsorted(data: array[float], p: int, n: int, first: float) -> int:
    end = p + n
    k = p
    while k < end:
        if data[k] < first:
            del data[k : k + 2]
            end -= 2
        else:
            k += 2
    return end - p


class ExtremeKernel(WindowedKernel):
    def __init__(self, d: FeatureDef) -> None:
        super().__init__(d)
        self.lowest = d.agg == "min"
        self.fresh = array("d")
        self.step = 2

    def _pick(self, a: float, b: float) -> float:
        return min(a, b) if self.lowest else max(a, b)

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if not is_number(v):
            return n
        w = self.w
        first = newest // w - self.nb + 1
        b = ts // w
        if b < first:
            return n
        n = _evict_unsorted(data, p, n, first)
        x = float(v)
        end = p + n
        for k in range(p, end, 2):
            if data[k] == b:
                data[k + 1] = self._pick(data[k + 1], x)
                return n
        data.insert(end, x)
        data.insert(end, b)
        return n + 2

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        nb = self.nb
        top = as_of // self.w
        live = [data[k + 1] for k in range(p, p + n, 2) if top - nb < data[k] <= top]
        if not live:
            return None
        return min(live) if self.lowest else max(live)

    def evict(self, data: Any, p: int, n: int, first: float) -> int:
        return _evict_unsorted(data, p, n, first)

    def merge(self, a: Any, b: Any) -> Any:
        out = array("d", a)
        n = len(a)
        for q in range(0, len(b), 2):
            for k in range(0, n, 2):
                if out[k] == b[q]:
                    out[k + 1] = self._pick(out[k + 1], b[q + 1])
                    break
            else:
                out.extend(b[q : q + 2])
        return out


# --------------------------------------------------------------------------------------
# distinct: an object state, a list [b, digests, b, digests, ...]: each bucket's values
# as sorted 64-bit digests in an array('q') (at most max_distinct a bucket; 8 bytes a
# value where a set of the values held 60 or more); a list, not a dict: profiles hold one
# bucket or a few.
# --------------------------------------------------------------------------------------


def value_key(v: Any) -> int:
    """The digest a distinct bucket holds for `v`: numbers by their float value (3 and
    3.0 are one value), strings by their text.

    >>> value_key(3) == value_key(3.0), value_key(3) == value_key("3")
    (True, False)
    """
    if isinstance(v, str):
        return key64(v)
    return key64(f"\0{float(v)!r}" if is_number(v) else f"\1{v!r}")


def _evict_keys(buckets: list[Any], first: float) -> int:
    """Drop the buckets below `first`; the number left."""
    keep = [k for k in range(0, len(buckets), 2) if buckets[k] >= first]
    if 2 * len(keep) < len(buckets):
        buckets[:] = [x for k in keep for x in buckets[k : k + 2]]
    return len(keep)


class DistinctKernel(WindowedKernel):
    def __init__(self, d: FeatureDef) -> None:
        super().__init__(d)
        self.most = d.max_distinct

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if v is None or isinstance(v, dict | list):
            return 0
        buckets: list[Any] = data
        w = self.w
        first = newest // w - self.nb + 1
        b = int(ts // w)
        if b < first:
            return 0
        _evict_keys(buckets, first)
        for k in range(0, len(buckets), 2):
            if buckets[k] == b:
                keys = buckets[k + 1]
                break
        else:
            keys = array("q")
            buckets += (b, keys)
        if len(keys) < self.most:
            key = value_key(v)
            i = bisect_left(keys, key)
            if i == len(keys) or keys[i] != key:
                keys.insert(i, key)
        return 0

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        buckets: list[Any] = data
        nb = self.nb
        top = as_of // self.w
        live = [buckets[k + 1] for k in range(0, len(buckets), 2) if top - nb < buckets[k] <= top]
        if not live:
            return 0.0
        if len(live) == 1:
            return float(len(live[0]))
        return float(len(set().union(*live)))

    def evict(self, data: Any, p: int, n: int, first: float) -> int:
        return _evict_keys(data, first)

    def merge(self, a: Any, b: Any) -> Any:
        most = self.most
        out = [x if k % 2 == 0 else array("q", x) for k, x in enumerate(a)]
        for q in range(0, len(b), 2):
            for k in range(0, len(out), 2):
                if out[k] == b[q]:
                    out[k + 1] = array("q", sorted(set(out[k + 1]).union(b[q + 1]))[:most])
                    break
            else:
                out += (b[q], array("q", b[q + 1]))
        return out


# --------------------------------------------------------------------------------------
# Unwindowed: a few numbers each.
# --------------------------------------------------------------------------------------


class LatestKernel(Kernel):
    """States led by a time (last, recency): a merge keeps the later; a tie keeps `a`."""

    def merge(self, a: Any, b: Any) -> Any:
        return array("d", b if b[0] > a[0] else a)


class EarliestKernel(Kernel):
    """States of a first time (first_seen, age; -1: none yet): a merge keeps the earlier
    one held."""

    earliest = True

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        seen: float = data[p]
        if seen < 0.0 or ts < seen:
            data[p] = ts
        return 1

    def merge(self, a: Any, b: Any) -> Any:
        return array("d", b if a[0] < 0.0 or 0.0 <= b[0] < a[0] else a)


class AddedKernel(Kernel):
    """Running totals (lifetime count, sum, avg's count and sum): a merge adds them."""

    def merge(self, a: Any, b: Any) -> Any:
        return array("d", [x + y for x, y in zip(a, b, strict=True)])


class LastKernel(LatestKernel):
    def __init__(self, d: FeatureDef) -> None:
        self.fresh = array("d", [-1.0, 0.0])

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if is_number(v) and ts >= data[p]:
            data[p] = ts
            data[p + 1] = float(v)
        return 2

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        return data[p + 1] if data[p] >= 0.0 else None


class RecencyKernel(LatestKernel):
    def __init__(self, d: FeatureDef) -> None:
        self.fresh = array("d", [-1.0])
        self.unit = float(d.unit_ms)

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if ts > data[p]:
            data[p] = ts
        return 1

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        seen: float = data[p]
        return (as_of - seen) / self.unit if seen >= 0.0 else None


class FirstSeenKernel(EarliestKernel):
    def __init__(self, d: FeatureDef) -> None:
        self.fresh = array("d", [-1.0])

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        seen: float = data[p]
        return seen / 1000.0 if seen >= 0.0 else None


class AgeKernel(EarliestKernel):
    def __init__(self, d: FeatureDef) -> None:
        self.fresh = array("d", [-1.0])
        self.unit = float(d.unit_ms)

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        seen: float = data[p]
        return (as_of - seen) / self.unit if seen >= 0.0 else None


class DecayedKernel(Kernel):
    def __init__(self, d: FeatureDef) -> None:
        self.fresh = array("d", [0.0, -1.0])
        self.half_life = float(d.half_life_ms)
        self.weighted = d.value is not None

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if not self.weighted:
            amount = 1.0
        elif is_number(v):
            amount = float(v)
        else:
            return 2
        half_life = self.half_life
        ref: float = data[p + 1]
        if ref < 0.0:
            data[p] = amount
            data[p + 1] = ts
        elif ts >= ref:
            data[p] = data[p] * 2.0 ** (-(ts - ref) / half_life) + amount
            data[p + 1] = ts
        else:
            data[p] += amount * 2.0 ** (-(ref - ts) / half_life)
        return 2

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        ref: float = data[p + 1]
        if ref < 0.0:
            return 0.0
        acc: float = data[p]
        return acc * 2.0 ** (-(as_of - ref) / self.half_life)

    def merge(self, a: Any, b: Any) -> Any:
        if a[1] < 0.0 or b[1] < 0.0:
            return array("d", b if a[1] < 0.0 else a)
        ref = max(a[1], b[1])
        half_life = self.half_life
        return array("d", [sum(x[0] * 2.0 ** (-(ref - x[1]) / half_life) for x in (a, b)), ref])


# Lifetime (``window = "lifetime"``): running totals, nothing ever leaves.


class LifeCountKernel(AddedKernel):
    def __init__(self, d: FeatureDef) -> None:
        self.fresh = array("d", [0.0])

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        data[p] += 1.0
        return 1

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        total: float = data[p]
        return total


class LifeSumKernel(LifeCountKernel):
    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if is_number(v):
            data[p] += v
        return 1


class LifeAvgKernel(AddedKernel):
    def __init__(self, d: FeatureDef) -> None:
        self.fresh = array("d", [0.0, 0.0])

    def add(self, data: Any, p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if is_number(v):
            data[p] += 1.0
            data[p + 1] += v
        return 2

    def value(self, data: Any, p: int, n: int, as_of: float) -> float | None:
        count: float = data[p]
        return data[p + 1] / count if count else None


LIFETIME: dict[str, Callable[[FeatureDef], Kernel]] = {
    "count": LifeCountKernel, "sum": LifeSumKernel, "avg": LifeAvgKernel,
}  # fmt: skip

KERNELS: dict[str, Callable[[FeatureDef], Kernel]] = {
    "count": CountKernel, "sum": SumKernel, "avg": AvgKernel, "min": ExtremeKernel, "max": ExtremeKernel,
    "distinct": DistinctKernel, "trend": TrendKernel, "last": LastKernel, "recency": RecencyKernel,
    "first_seen": FirstSeenKernel, "decayed_sum": DecayedKernel, "age": AgeKernel,
}  # fmt: skip


def kernel(d: FeatureDef) -> Kernel:
    """The kernel of feature `d` (not an expr)."""
    if d.agg in LIFETIME and not d.window_ms:
        return LIFETIME[d.agg](d)
    return KERNELS[d.agg](d)


# The value of a feature no event has touched yet (None: absent).
EMPTY_VALUE = {"count": 0.0, "sum": 0.0, "distinct": 0.0, "trend": 0.0, "decayed_sum": 0.0}


def restored(state: Any) -> Any:
    """One feature's state from a snapshot, as its kernel keeps it: a segment's numbers
    (an ``array('d')``), or the object of an object state."""
    state = state.plain() if isinstance(state, _Restored) else state
    if isinstance(state, list) and any(isinstance(x, set) for x in state[1::2]):  # distinct: values
        pairs = zip(state[0::2], state[1::2], strict=True)
        return [x for b, vs in pairs for x in (b, array("q", sorted({value_key(v) for v in vs})))]
    return state
