"""Per-profile windowed features in event time: bounded ring buffers, pure and picklable.

`ProfileFeatures` holds one profile's state for every declared feature (see
`flows.features.declarations` for the semantics). ``add(event)`` folds an event in (or refuses it
as late); ``values(as_of)`` reads every feature as of an event time. Nothing here does
I/O or reads a clock: the caller passes ``as_of``, and the compiled `FeaturePlan`.

A pickled profile carries its states by feature name and declaration fingerprint, not
the plan; restored, it is `bind`-ed to the running plan: a feature whose declaration
changed starts empty, a removed one is dropped.

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
>>> from flows.features.plan import FeaturePlan
>>> pf = ProfileFeatures(FeaturePlan(fs), lateness_ms=600_000)
>>> ev = Event("e1", "p1", "order_paid", 1_000_000, "app", {"amount": 30.0}, {}, {}, 0, "doc", 0, 0)
>>> pf.add(ev)
True
>>> pf.values(1_000_000)
{'orders_1h': 1.0, 'revenue_1h': 30.0}
>>> pf.values(1_000_000 + 3_600_000 + 300_000)   # an hour (and a bucket) later, silent
{'orders_1h': 0.0, 'revenue_1h': 0.0}
"""

from __future__ import annotations

from bisect import insort
from typing import Any

from flows.core.contract import Event
from flows.features.aggregates import STATE_TYPES, Aggregate
from flows.features.plan import FeaturePlan


class ProfileFeatures:
    """One profile's feature state: add events in arrival order, read values as of a time."""

    __slots__ = ("_plan", "_saved", "dirty", "lateness_ms", "max_ts", "states", "touched")

    def __init__(self, plan: FeaturePlan, lateness_ms: int) -> None:
        self._plan = plan
        self._saved: dict[str, tuple[str, Any]] | None = None
        self.lateness_ms = lateness_ms
        self.max_ts = -1
        self.states: list[Aggregate | None] = [None] * len(plan.features)
        self.touched: list[int] = []  # indices with a state, in plan order
        self.dirty = 0  # bit i: feature i changed by events since `changed()` last ran

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
                st = states[i] = STATE_TYPES[d.agg]()
                insort(self.touched, i)
            self.dirty |= 1 << i
            st.add(d, ts, get(ev) if get is not None else None, top // width if width else 0)
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
                self.dirty |= 1 << i
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
        mask = self.dirty
        self.dirty = 0
        states = self.states
        for i in plan.continuous:
            if states[i] is not None:
                mask |= 1 << i
        for i, width in plan.windowed:
            if states[i] is not None and as_of // width != since // width:
                mask |= 1 << i
        feats, names = plan.features, plan.names
        out: dict[str, float] = {}
        gone: list[str] = []
        empty = plan.empty
        rest = mask
        while rest:  # each set bit, lowest first
            low = rest & -rest
            rest ^= low
            i = low.bit_length() - 1
            st = states[i]
            v = empty.get(names[i]) if st is None else st.value(feats[i], as_of)
            if v is None:
                gone.append(names[i])
            else:
                out[names[i]] = v
        if plan.exprs and mask:
            # An expr reads only the features it names: compute just those.
            env = dict(out)
            for i in plan.expr_inputs:
                if names[i] not in env and not mask >> i & 1:
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

    def __getstate__(self) -> tuple[int, int, dict[str, tuple[str, Any]]]:
        if self._saved is not None:  # restored and not bound yet: save what was restored
            return self.lateness_ms, self.max_ts, self._saved
        plan = self._plan
        states = {
            plan.names[i]: (plan.fingerprints[i], st) for i, st in enumerate(self.states) if st is not None
        }
        return self.lateness_ms, self.max_ts, states

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        # (plan key, lateness, max_ts, states) from snapshots that named their plan
        self.lateness_ms, self.max_ts, self._saved = state[-3:]
        self.states, self.touched, self.dirty = [], [], 0

    def bind(self, plan: FeaturePlan) -> None:
        """Attach restored state to the running `plan`, feature by feature: a state is kept
        only where the declaration's fingerprint is unchanged."""
        saved = self._saved or {}
        self._plan = plan
        self._saved = None
        self.states = [None] * len(plan.features)
        for i, name in enumerate(plan.names):
            got = saved.get(name)
            if got is not None and got[0] == plan.fingerprints[i]:
                self.states[i] = got[1]
        self.touched = [i for i, st in enumerate(self.states) if st is not None]
        self.dirty = sum(1 << i for i in self.touched)
