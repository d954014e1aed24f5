"""Per-profile windowed features in event time: bounded ring buffers, pure and picklable.

`ProfileFeatures` holds one profile's state for every declared feature (see
`flows.features.declarations` for the semantics). ``add(event)`` folds an event in (or refuses it
as late); ``values(as_of)`` reads every feature as of an event time. Nothing here does
I/O or reads a clock: the caller passes ``as_of``.

Memory is bounded per profile and known: a windowed feature keeps at most ``buckets``
buckets (``2 * buckets`` for trend), a ``distinct`` bucket at most ``max_distinct``
values, every other aggregation a few numbers. Buckets are stored sparsely (only the
ones that saw an event), so a quiet profile costs little.

>>> from flows.core.contract import Event
>>> from flows.features.declarations import parse_features
>>> fs = parse_features({"feature": [
...     {"name": "orders_1h", "agg": "count", "types": ["order_paid"], "window": "1h",
...      "buckets": 12},
...     {"name": "revenue_1h", "agg": "sum", "types": ["order_paid"], "value": "props.amount",
...      "window": "1h"}]})
>>> pf = ProfileFeatures(fs, lateness_ms=600_000)
>>> ev = Event("e1", "p1", "order_paid", 1_000_000, "app", {"amount": 30.0}, {}, {}, 0, "doc", 0, 0)
>>> pf.add(ev)
True
>>> pf.values(1_000_000)
{'orders_1h': 1.0, 'revenue_1h': 30.0}
>>> pf.values(1_000_000 + 3_600_000 + 300_000)   # an hour (and a bucket) later, silent
{'orders_1h': 0.0, 'revenue_1h': 0.0}
"""

from __future__ import annotations

import ast
import hashlib
import math
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Any

from flows.core.conditions import field_getter, is_number, matcher
from flows.core.contract import Event
from flows.features.declarations import FeatureDef, FeatureSet


class _Agg:
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


class _Buckets(_Agg):
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


class _Avg(_Agg):
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


class _Extreme(_Agg):
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


class _Distinct(_Agg):
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


class _Trend(_Agg):
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


class _Last(_Agg):
    __slots__ = ("ts", "v")

    def __init__(self) -> None:
        self.ts = -1
        self.v = 0.0

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if is_number(v) and ts >= self.ts:
            self.ts, self.v = ts, float(v)

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        return self.v if self.ts >= 0 else None


class _Recency(_Agg):
    __slots__ = ("ts",)

    def __init__(self) -> None:
        self.ts = -1

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if ts > self.ts:
            self.ts = ts

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        return (as_of - self.ts) / d.unit_ms if self.ts >= 0 else None


class _FirstSeen(_Agg):
    __slots__ = ("ts",)

    def __init__(self) -> None:
        self.ts = -1

    def add(self, d: FeatureDef, ts: int, v: Any, horizon_bucket: int) -> None:
        if self.ts < 0 or ts < self.ts:
            self.ts = ts

    def value(self, d: FeatureDef, as_of: int) -> float | None:
        return self.ts / 1000 if self.ts >= 0 else None


class _Decayed(_Agg):
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


_STATE_TYPES: dict[str, Callable[[], _Agg]] = {
    "count": _Count, "sum": _Sum, "avg": _Avg, "min": lambda: _Extreme(min),
    "max": lambda: _Extreme(max), "distinct": _Distinct, "trend": _Trend, "last": _Last,
    "recency": _Recency, "first_seen": _FirstSeen, "decayed_sum": _Decayed,
}  # fmt: skip
# The value of a feature no event has touched yet (None: absent).
_EMPTY_VALUE = {"count": 0.0, "sum": 0.0, "distinct": 0.0, "trend": 0.0, "decayed_sum": 0.0}


def _expr_refs(expr: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}


def _compile_expr(expr: str) -> Callable[[dict[str, float]], float | None]:
    tree = ast.parse(expr, mode="eval")

    def ev(node: ast.AST, env: dict[str, float]) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body, env)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return env[node.id]  # KeyError: absent operand
        if isinstance(node, ast.UnaryOp):
            x = ev(node.operand, env)
            return -x if isinstance(node.op, ast.USub) else x
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left, env), ev(node.right, env)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            return a / b  # ZeroDivisionError: absent
        raise ValueError(f"unsupported expression node {type(node).__name__}")

    def run(env: dict[str, float]) -> float | None:
        try:
            return ev(tree, env)
        except (KeyError, ZeroDivisionError):
            return None

    return run


class FeaturePlan:
    """A FeatureSet compiled for speed: which features each event type touches."""

    def __init__(self, fs: FeatureSet) -> None:
        self.features = fs.features
        self.names = [d.name for d in fs.features]
        self.fingerprints = [
            hashlib.sha1(repr(d).encode(), usedforsecurity=False).hexdigest()[:16] for d in fs.features
        ]
        self._by_type: dict[str, list[tuple[int, FeatureDef, Any, Any, int]]] = {}
        self._any: list[tuple[int, FeatureDef, Any, Any, int]] = []
        self.exprs: list[tuple[int, Callable[[dict[str, float]], float | None]]] = []
        self.continuous = [i for i, d in enumerate(fs.features) if d.agg in ("recency", "decayed_sum")]
        self.windowed = [(i, d.bucket_ms) for i, d in enumerate(fs.features) if d.bucket_ms]
        # Per feature: (bucket width, buckets any read or write can still reach behind the
        # newest event's bucket); (0, 0) for unwindowed ones. Sweeps run when the newest
        # event time crosses a `sweep_ms` edge (the narrowest bucket).
        self.reach = [
            (d.bucket_ms, d.buckets * (2 if d.agg == "trend" else 1)) if d.bucket_ms else (0, 0)
            for d in fs.features
        ]
        self.sweep_ms = min((w for w, _ in self.reach if w), default=0)
        self.tags = fs.tags
        self.rfm = fs.rfm
        self.segments = fs.segments
        rfm_inputs = (fs.rfm.recency, fs.rfm.frequency, fs.rfm.monetary) if fs.rfm else ()
        self.tag_inputs = frozenset([*(f for t in fs.tags for f, _, _ in t.when), *rfm_inputs])
        # Values of features no event touched yet: one dict, copied per read.
        self.empty = {d.name: _EMPTY_VALUE[d.agg] for d in fs.features if d.agg in _EMPTY_VALUE}
        index = {d.name: i for i, d in enumerate(fs.features)}
        self.expr_inputs = sorted(
            {index[n] for d in fs.features if d.agg == "expr" for n in _expr_refs(d.expr or "0")}
        )
        self.horizon_ms = max((d.window_ms * (2 if d.agg == "trend" else 1) for d in fs.features), default=0)
        for i, d in enumerate(fs.features):
            if d.agg == "expr":
                self.exprs.append((i, _compile_expr(d.expr or "0")))
                continue
            entry = (i, d, matcher(d.where), field_getter(d.value) if d.value else None, d.bucket_ms)
            if d.types:
                for t in d.types:
                    self._by_type.setdefault(t, []).append(entry)
            else:
                self._any.append(entry)
        self._cache: dict[str, list[tuple[int, FeatureDef, Any, Any, int]]] = {}

    def for_type(self, etype: str) -> list[tuple[int, FeatureDef, Any, Any, int]]:
        got = self._cache.get(etype)
        if got is None:
            got = sorted(self._by_type.get(etype, []) + self._any, key=lambda e: e[0])
            if len(self._cache) < 10_000:
                self._cache[etype] = got
        return got


# Plans in this process by fingerprint, so pickled profile state does not carry its plan.
_PLANS: dict[str, FeaturePlan] = {}


_BY_SET: dict[int, tuple[FeatureSet, str]] = {}


def plan_for(fs: FeatureSet) -> tuple[str, FeaturePlan]:
    """The compiled plan of `fs` and its key (compiled once per FeatureSet object)."""
    known = _BY_SET.get(id(fs))
    if known is not None and known[0] is fs:
        return known[1], _PLANS[known[1]]
    plan = FeaturePlan(fs)
    key = hashlib.sha1("|".join(plan.fingerprints).encode(), usedforsecurity=False).hexdigest()[:16]
    existing = _PLANS.setdefault(key, plan)
    _BY_SET[id(fs)] = (fs, key)
    return key, existing


class ProfileFeatures:
    """One profile's feature state: add events in arrival order, read values as of a time."""

    __slots__ = ("_plan", "_plan_key", "dirty", "lateness_ms", "max_ts", "states", "touched")

    def __init__(self, fs: FeatureSet, lateness_ms: int, *, plan_key: str | None = None) -> None:
        if plan_key is None:
            plan_key, plan = plan_for(fs)
        else:
            plan = _PLANS[plan_key]
        self._plan_key = plan_key
        self._plan = plan
        self.lateness_ms = lateness_ms
        self.max_ts = -1
        self.states: list[_Agg | None] = [None] * len(plan.features)
        self.touched: list[int] = []  # indices with a state, in plan order
        self.dirty: set[int] = set()  # indices changed by events since `changed()` last ran

    def add(self, ev: Event) -> bool:
        """Fold `ev` in; False (and no change) when it is late for this profile."""
        ts = ev.ts_ms
        if self.max_ts >= 0 and ts < self.max_ts - self.lateness_ms:
            return False
        if ts > self.max_ts:
            sweep = self._plan.sweep_ms
            due = sweep and self.max_ts >= 0 and ts // sweep != self.max_ts // sweep
            self.max_ts = ts
            if due:
                self._expire()
        states = self.states
        top = self.max_ts
        for i, d, match, get, width in self._plan.for_type(ev.type):
            if match is not None and not match(ev):
                continue
            st = states[i]
            if st is None:
                st = states[i] = _STATE_TYPES[d.agg]()
                insort(self.touched, i)
            self.dirty.add(i)
            st.add(d, ts, get(ev) if get is not None else None, top // width if width else 0)  # type: ignore[union-attr]
        return True

    def _expire(self) -> None:
        """Free what no read or write can reach any more, now that the newest event is
        `max_ts`: buckets behind every window, and a windowed feature's whole state once it
        holds none. So a profile's state follows its recent activity, not every event type
        it ever had (an order 200 days ago keeps nothing in `orders_90d`). Reads are never
        earlier than `max_ts` (`ProfileState.as_of`), so no value changes; a dropped
        feature is marked dirty so its next update reports its empty value."""
        top = self.max_ts
        states = self.states
        reach = self._plan.reach
        dropped = False
        for i in self.touched:
            width, keep = reach[i]
            if width and states[i].expire(top // width - keep + 1):  # type: ignore[union-attr]
                states[i] = None
                self.dirty.add(i)
                dropped = True
        if dropped:
            self.touched = [i for i in self.touched if states[i] is not None]

    def values(self, as_of: int) -> dict[str, float]:
        """Every feature with a value as of event time `as_of` (>= every accepted ts)."""
        plan = self._plan
        out = plan.empty.copy()
        states = self.states
        feats = plan.features
        names = plan.names
        v: float | None
        for i in self.touched:
            v = states[i].value(feats[i], as_of)  # type: ignore[union-attr]
            if v is not None:
                out[names[i]] = v
            else:
                out.pop(names[i], None)
        for i, fn in plan.exprs:
            v = fn(out)
            if v is not None:
                out[names[i]] = v
        return out

    @property
    def plan(self) -> FeaturePlan:
        return self._plan

    def changed(self, as_of: int, since: int) -> tuple[dict[str, float], list[str]]:
        """Features whose value may differ from what they were as of `since`: those events
        touched since the last call, those that move with time (recency, decay), windows
        that crossed a bucket edge, and every expr. Returns (values, names now absent)."""
        plan = self._plan
        idx = self.dirty
        self.dirty = set()
        states = self.states
        for i in plan.continuous:
            if states[i] is not None:
                idx.add(i)
        for i, width in plan.windowed:
            if states[i] is not None and as_of // width != since // width:
                idx.add(i)
        feats, names = plan.features, plan.names
        out: dict[str, float] = {}
        gone: list[str] = []
        empty = plan.empty
        for i in idx:
            st = states[i]
            v = empty.get(names[i]) if st is None else st.value(feats[i], as_of)
            if v is None:
                gone.append(names[i])
            else:
                out[names[i]] = v
        if plan.exprs and idx:
            # An expr reads only the features it names: compute just those.
            env = dict(out)
            for i in plan.expr_inputs:
                if names[i] not in env and i not in idx:
                    st = states[i]
                    v = plan.empty.get(names[i]) if st is None else st.value(feats[i], as_of)
                    if v is not None:
                        env[names[i]] = v
            for i, fn in plan.exprs:
                v = fn(env)
                if v is None:
                    gone.append(names[i])
                else:
                    out[names[i]] = env[names[i]] = v
        return out, gone

    def live(self, as_of: int) -> bool:
        """True while some windowed feature may still change as time passes."""
        return self.max_ts >= 0 and as_of - self.max_ts <= self._plan.horizon_ms

    def __getstate__(self) -> tuple[str, int, int, dict[str, tuple[str, Any]]]:
        plan = self._plan
        states = {
            plan.names[i]: (plan.fingerprints[i], st) for i, st in enumerate(self.states) if st is not None
        }
        return self._plan_key, self.lateness_ms, self.max_ts, states

    def __setstate__(self, state: tuple[str, int, int, dict[str, tuple[str, Any]]]) -> None:
        key, self.lateness_ms, self.max_ts, saved = state
        plan = _PLANS.get(key) or current_plan()
        self._plan_key = key if key in _PLANS else _CURRENT[0]
        self._plan = plan
        self.states = [None] * len(plan.features)
        for i, name in enumerate(plan.names):
            got = saved.get(name)
            if got is not None and got[0] == plan.fingerprints[i]:
                self.states[i] = got[1]  # unchanged declaration: keep its state
        self.touched = [i for i, st in enumerate(self.states) if st is not None]
        self.dirty = set(self.touched)


_CURRENT: list[str] = []


def set_current_plan(fs: FeatureSet) -> str:
    """Register the engine's feature set; state restored from an older one is remapped to it
    by feature name (a feature whose declaration changed starts empty)."""
    key, _ = plan_for(fs)
    _CURRENT[:] = [key]
    return key


def current_plan() -> FeaturePlan:
    if not _CURRENT:
        raise RuntimeError("no feature plan registered (flows.features.windows.set_current_plan)")
    return _PLANS[_CURRENT[0]]
