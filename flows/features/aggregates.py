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
from typing import Any, NamedTuple

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

# (state, segment start, its length, event ts, event value, newest accepted ts) -> new length
AddFn = Callable[[Any, int, int, float, Any, float], int]
# (state, segment start, its length, as_of) -> value, None when absent
ValueFn = Callable[[Any, int, int, float], "float | None"]
# (state, segment start, its length, first bucket kept) -> new length (== head: no bucket
# left; for an object state, the number of buckets left)
EvictFn = Callable[[Any, int, int, float], int]
# (one state, another: a segment's numbers or an object state each) -> the state of both
# streams of events together (two persons' features at a merge); neither is changed
MergeFn = Callable[[Any, Any], Any]


class Kernel(NamedTuple):
    """How one feature's state is kept and used: with `fresh` set, as the segment at ``p``
    of ``n`` numbers in the profile's array; otherwise as an object (a list)."""

    fresh: array[float] | None  # a new state's segment
    add: AddFn
    value: ValueFn
    evict: EvictFn | None  # windowed aggregations only
    head: int  # numbers before the buckets
    step: int  # numbers per bucket (0: unwindowed or object state)
    merge: MergeFn  # two states into one (what one profile would hold had it seen both)


# --------------------------------------------------------------------------------------
# Sorted buckets: ``head`` totals (one per column), then ``(b, column...)`` by ascending b.
# count: head 0, step 2 (its window sums are exact integers, no running total needed);
# sum, trend: head 1, step 2; avg: head 2, step 3 (count and sum columns).
# --------------------------------------------------------------------------------------


def _sorted_evict(head: int, step: int) -> EvictFn:
    """evict for sorted buckets: drop those below `first`, recomputing the column totals."""

    def evict(data: array[float], p: int, n: int, first: float) -> int:
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

    return evict


_evict_pairs = _sorted_evict(0, 2)  # count
_evict_totalled_pairs = _sorted_evict(1, 2)  # sum, trend
_evict_avg = _sorted_evict(2, 3)


def _sorted_merge(head: int, step: int) -> MergeFn:
    """merge for sorted buckets: a bucket in both adds column by column; totals recomputed."""

    def merge(a: array[float], b: array[float]) -> array[float]:
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

    return merge


_merge_pairs = _sorted_merge(0, 2)  # count
_merge_totalled_pairs = _sorted_merge(1, 2)  # sum, trend
_merge_avg = _sorted_merge(2, 3)


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


def _count(d: FeatureDef) -> Kernel:
    w, nb = float(d.bucket_ms), float(d.buckets)

    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        top = newest // w
        k = p + n - 2
        if ts == newest and n and data[k] == top:
            # The newest event, in the newest bucket: that bucket was written while the
            # window started where it starts now, and that add evicted; nothing to evict.
            data[k + 1] += 1.0
            return n
        first = top - nb + 1
        if n and data[p] < first:
            n = _evict_pairs(data, p, n, first)
        b = ts // w
        if b < first:
            return n
        k = _slot(data, p, n, b, 0, 2)
        if k < 0:
            k = ~k
            n += 2
        data[k + 1] += 1.0
        return n

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        if not n:
            return 0.0
        top = as_of // w
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

    return Kernel(array("d"), add, value, _evict_pairs, 0, 2, _merge_pairs)


def _sums(w: float, keep: float, numeric: bool) -> tuple[AddFn, EvictFn]:
    """add and evict for a bucket sum with a running total (of 1 per event, or of the
    event's number) that any read or write reaches `keep` buckets back."""

    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if numeric:
            if not is_number(v):
                return n
            amount = v
        else:
            amount = 1.0
        top = newest // w
        k = p + n - 2
        if ts == newest and n > 1 and data[k] == top:  # see _count
            data[k + 1] += amount
            data[p] += amount
            return n
        first = top - keep + 1
        if n > 1 and data[p + 1] < first:
            n = _evict_totalled_pairs(data, p, n, first)
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

    return add, _evict_totalled_pairs


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


def _sum(d: FeatureDef) -> Kernel:
    w, nb = float(d.bucket_ms), float(d.buckets)
    add, evict = _sums(w, nb, True)

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        if n == 1:
            return 0.0
        top = as_of // w
        if top - nb < data[p + 1] and top >= data[p + n - 2]:
            return data[p]
        return _total(data, p, n, top - nb + 1, top)

    return Kernel(array("d", [0.0]), add, value, evict, 1, 2, _merge_totalled_pairs)


def _trend(d: FeatureDef) -> Kernel:
    w, nb = float(d.bucket_ms), float(d.buckets)
    add, evict = _sums(w, 2 * nb, d.of == "sum")

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        top = as_of // w
        return _total(data, p, n, top - nb + 1, top) - _total(data, p, n, top - 2 * nb + 1, top - nb)

    return Kernel(array("d", [0.0]), add, value, evict, 1, 2, _merge_totalled_pairs)


def _avg(d: FeatureDef) -> Kernel:
    w, nb = float(d.bucket_ms), float(d.buckets)

    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if not is_number(v):
            return n
        first = newest // w - nb + 1
        if n > 2 and data[p + 2] < first:
            n = _evict_avg(data, p, n, first)
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

    def column(data: array[float], p: int, n: int, first: float, last: float, c: int) -> float:
        if n == 2:
            return 0.0
        if first <= data[p + 2] and last >= data[p + n - 3]:
            return data[p + c - 1]
        return math.fsum([data[k + c] for k in range(p + 2, p + n, 3) if first <= data[k] <= last])

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        top = as_of // w
        count = column(data, p, n, top - nb + 1, top, 1)
        if not count:
            return None
        return column(data, p, n, top - nb + 1, top, 2) / count

    return Kernel(array("d", [0.0, 0.0]), add, value, _evict_avg, 2, 3, _merge_avg)


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


def _extreme(d: FeatureDef) -> Kernel:
    w, nb = float(d.bucket_ms), float(d.buckets)
    pick: Callable[[float, float], float] = min if d.agg == "min" else max
    fold: Callable[[list[float]], float] = min if d.agg == "min" else max

    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if not is_number(v):
            return n
        first = newest // w - nb + 1
        b = ts // w
        if b < first:
            return n
        n = _evict_unsorted(data, p, n, first)
        x = float(v)
        end = p + n
        for k in range(p, end, 2):
            if data[k] == b:
                data[k + 1] = pick(data[k + 1], x)
                return n
        data.insert(end, x)
        data.insert(end, b)
        return n + 2

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        top = as_of // w
        live = [data[k + 1] for k in range(p, p + n, 2) if top - nb < data[k] <= top]
        return fold(live) if live else None

    def merge(a: array[float], b: array[float]) -> array[float]:
        out = array("d", a)
        n = len(a)
        for q in range(0, len(b), 2):
            for k in range(0, n, 2):
                if out[k] == b[q]:
                    out[k + 1] = pick(out[k + 1], b[q + 1])
                    break
            else:
                out.extend(b[q : q + 2])
        return out

    return Kernel(array("d"), add, value, _evict_unsorted, 0, 2, merge)


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


def _evict_keys(buckets: list[Any], p: int, n: int, first: float) -> int:
    """Drop the buckets below `first`; the number left."""
    keep = [k for k in range(0, len(buckets), 2) if buckets[k] >= first]
    if 2 * len(keep) < len(buckets):
        buckets[:] = [x for k in keep for x in buckets[k : k + 2]]
    return len(keep)


def _distinct(d: FeatureDef) -> Kernel:
    w, nb, most = float(d.bucket_ms), float(d.buckets), d.max_distinct

    def add(buckets: list[Any], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if v is None or isinstance(v, dict | list):
            return 0
        first = newest // w - nb + 1
        b = int(ts // w)
        if b < first:
            return 0
        _evict_keys(buckets, p, n, first)
        for k in range(0, len(buckets), 2):
            if buckets[k] == b:
                keys = buckets[k + 1]
                break
        else:
            keys = array("q")
            buckets += (b, keys)
        if len(keys) < most:
            key = value_key(v)
            i = bisect_left(keys, key)
            if i == len(keys) or keys[i] != key:
                keys.insert(i, key)
        return 0

    def value(buckets: list[Any], p: int, n: int, as_of: float) -> float | None:
        top = as_of // w
        live = [buckets[k + 1] for k in range(0, len(buckets), 2) if top - nb < buckets[k] <= top]
        if not live:
            return 0.0
        if len(live) == 1:
            return float(len(live[0]))
        return float(len(set().union(*live)))

    def merge(a: list[Any], b: list[Any]) -> list[Any]:
        out = [x if k % 2 == 0 else array("q", x) for k, x in enumerate(a)]
        for q in range(0, len(b), 2):
            for k in range(0, len(out), 2):
                if out[k] == b[q]:
                    out[k + 1] = array("q", sorted(set(out[k + 1]).union(b[q + 1]))[:most])
                    break
            else:
                out += (b[q], array("q", b[q + 1]))
        return out

    return Kernel(None, add, value, _evict_keys, 0, 0, merge)


# --------------------------------------------------------------------------------------
# Unwindowed: a few numbers each.
# --------------------------------------------------------------------------------------


def _latest(a: array[float], b: array[float]) -> array[float]:
    """merge of states led by a time (last, recency): the later; a tie keeps `a`."""
    return array("d", b if b[0] > a[0] else a)


def _earliest(a: array[float], b: array[float]) -> array[float]:
    """merge of a first time (first_seen, age; -1: none yet): the earlier one held."""
    return array("d", b if a[0] < 0.0 or 0.0 <= b[0] < a[0] else a)


def _added(a: array[float], b: array[float]) -> array[float]:
    """merge of running totals (lifetime count, sum, avg's count and sum)."""
    return array("d", [x + y for x, y in zip(a, b, strict=True)])


def _last(d: FeatureDef) -> Kernel:
    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if is_number(v) and ts >= data[p]:
            data[p] = ts
            data[p + 1] = float(v)
        return 2

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        return data[p + 1] if data[p] >= 0.0 else None

    return Kernel(array("d", [-1.0, 0.0]), add, value, None, 0, 0, _latest)


def _recency(d: FeatureDef) -> Kernel:
    unit = float(d.unit_ms)

    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if ts > data[p]:
            data[p] = ts
        return 1

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        seen = data[p]
        return (as_of - seen) / unit if seen >= 0.0 else None

    return Kernel(array("d", [-1.0]), add, value, None, 0, 0, _latest)


def _first_seen(d: FeatureDef) -> Kernel:
    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        seen = data[p]
        if seen < 0.0 or ts < seen:
            data[p] = ts
        return 1

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        seen = data[p]
        return seen / 1000.0 if seen >= 0.0 else None

    return Kernel(array("d", [-1.0]), add, value, None, 0, 0, _earliest)


def _decayed(d: FeatureDef) -> Kernel:
    half_life, weighted = float(d.half_life_ms), d.value is not None

    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if not weighted:
            amount = 1.0
        elif is_number(v):
            amount = float(v)
        else:
            return 2
        ref = data[p + 1]
        if ref < 0.0:
            data[p] = amount
            data[p + 1] = ts
        elif ts >= ref:
            data[p] = data[p] * 2.0 ** (-(ts - ref) / half_life) + amount
            data[p + 1] = ts
        else:
            data[p] += amount * 2.0 ** (-(ref - ts) / half_life)
        return 2

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        ref = data[p + 1]
        if ref < 0.0:
            return 0.0
        return data[p] * 2.0 ** (-(as_of - ref) / half_life)

    def merge(a: array[float], b: array[float]) -> array[float]:
        if a[1] < 0.0 or b[1] < 0.0:
            return array("d", b if a[1] < 0.0 else a)
        ref = max(a[1], b[1])
        return array("d", [sum(x[0] * 2.0 ** (-(ref - x[1]) / half_life) for x in (a, b)), ref])

    return Kernel(array("d", [0.0, -1.0]), add, value, None, 0, 0, merge)


def _age(d: FeatureDef) -> Kernel:
    unit = float(d.unit_ms)
    add = _first_seen(d).add

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        seen = data[p]
        return (as_of - seen) / unit if seen >= 0.0 else None

    return Kernel(array("d", [-1.0]), add, value, None, 0, 0, _earliest)


# Lifetime (``window = "lifetime"``): running totals, nothing ever leaves.


def _life_count(d: FeatureDef) -> Kernel:
    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        data[p] += 1.0
        return 1

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        return data[p]

    return Kernel(array("d", [0.0]), add, value, None, 0, 0, _added)


def _life_sum(d: FeatureDef) -> Kernel:
    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if is_number(v):
            data[p] += v
        return 1

    return Kernel(array("d", [0.0]), add, _life_count(d).value, None, 0, 0, _added)


def _life_avg(d: FeatureDef) -> Kernel:
    def add(data: array[float], p: int, n: int, ts: float, v: Any, newest: float) -> int:
        if is_number(v):
            data[p] += 1.0
            data[p + 1] += v
        return 2

    def value(data: array[float], p: int, n: int, as_of: float) -> float | None:
        return data[p + 1] / data[p] if data[p] else None

    return Kernel(array("d", [0.0, 0.0]), add, value, None, 0, 0, _added)


LIFETIME: dict[str, Callable[[FeatureDef], Kernel]] = {
    "count": _life_count, "sum": _life_sum, "avg": _life_avg,
}  # fmt: skip

KERNELS: dict[str, Callable[[FeatureDef], Kernel]] = {
    "count": _count, "sum": _sum, "avg": _avg, "min": _extreme, "max": _extreme,
    "distinct": _distinct, "trend": _trend, "last": _last, "recency": _recency,
    "first_seen": _first_seen, "decayed_sum": _decayed, "age": _age,
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
