"""Per-profile windowed features in event time: packed sparse buckets; bounded, pure, picklable.

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
ones that saw an event), so a quiet profile costs little. There is no object per
feature: the features holding state are bits of one int, their numbers are segments of
one ``array('d')`` in plan order (the segments' lengths in an ``array('H')``), worked on
by the kernels of `flows.features.aggregates`; only ``distinct`` keeps an object, a list
of buckets and their sets of values (its segment is empty).

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

from array import array
from collections.abc import Iterator, Mapping
from typing import Any

from flows.core.contract import Event
from flows.features.aggregates import Kernel, restored
from flows.features.plan import FeaturePlan


class ProfileFeatures:
    """One profile's feature state: add events in arrival order, read values as of a time."""

    __slots__ = ("_plan", "_saved", "data", "dirty", "held", "lateness_ms", "lens", "max_ts", "objs")

    def __init__(self, plan: FeaturePlan | None = None, lateness_ms: int = 0) -> None:
        if plan is not None:  # None: being unpickled, bound to a plan later
            self._plan = plan
        self._saved: dict[str, tuple[str, Any]] | None = None
        self.lateness_ms = lateness_ms
        self.max_ts = -1
        self.held = 0  # bit i: feature i holds state
        self.data = array("d")  # the held features' segments, in plan order
        self.lens = array("H")  # their lengths (at most 4,001: a trend of 2 x 1,000 buckets)
        self.objs: list[Any] | None = None  # the held object states (distinct), in plan order
        self.dirty = 0  # bit i: feature i changed by events since `changed()` last ran

    def add(self, ev: Event) -> bool:
        """Fold `ev` in; False (and no change) when it is late for this profile."""
        ts = ev.ts_ms
        newest = self.max_ts
        if newest >= 0 and ts < newest - self.lateness_ms:
            return False
        if ts > newest:
            sweep = self._plan.sweep_ms
            due = sweep and newest >= 0 and ts // sweep != newest // sweep
            before = newest
            self.max_ts = newest = ts
            if due:
                self._expire(before)
        data, lens = self.data, self.lens
        held = self.held
        dirty = self.dirty
        tsf = float(ts)  # kernels take times as floats
        newestf = tsf if ts == newest else float(newest)
        pos = k = 0  # segment k starts at pos: the first after the features passed so far
        for _, bit, gap, match, get, kern, fresh in self._plan.for_type(ev.type):
            if gap and held & gap:  # features held in between: step over their segments
                r = (held & gap).bit_count()
                pos += lens[k] if r == 1 else sum(lens[k : k + r])
                k += r
            if (match is not None and not match(ev)) or (
                kern.earliest and held & bit and 0.0 <= data[pos] <= tsf
            ):  # not this feature's event, or a first time it cannot move (not marked changed)
                if held & bit:
                    pos += lens[k]
                    k += 1
                continue
            dirty |= bit
            v = get(ev) if get is not None else None
            if fresh is None:  # an object state, its segment empty
                objs = self.objs
                if objs is None:
                    objs = self.objs = []
                j = (held & self._plan.objects & (bit - 1)).bit_count()
                if not held & bit:
                    held |= bit
                    lens.insert(k, 0)
                    objs.insert(j, [])
                kern.add(objs[j], 0, 0, tsf, v, newestf)
                k += 1
                continue
            if held & bit:
                n = kern.add(data, pos, lens[k], tsf, v, newestf)
            else:
                held |= bit
                lens.insert(k, 0)
                data[pos:pos] = fresh
                n = kern.add(data, pos, len(fresh), tsf, v, newestf)
            lens[k] = n
            pos += n
            k += 1
        self.held = held
        self.dirty = dirty
        return True

    def _expire(self, since: int = -1) -> None:
        """Free what no read or write can reach any more, now that the newest event is
        `max_ts`: buckets behind every window, and a windowed feature's whole state once it
        holds none. So a profile's state follows its recent activity, not every event type
        it ever had (an order 200 days ago keeps nothing in `orders_90d`). Reads are never
        earlier than `max_ts` (`ProfileState.as_of`), so no value changes; a feature that
        lost a bucket is marked dirty so its next update reports its new value (a bucket gone
        can no longer show that it left the window since then), a dropped one its empty value.

        With `since` (the newest event time at the last sweep), only the features whose
        bucket edge was crossed since are swept: for the others, what is out of reach has not
        moved."""
        top = self.max_ts
        plan = self._plan
        crossed = plan.crossed(since, top) if since >= 0 else -1
        reach, kernels = plan.reach, plan.kernels
        data, lens, objs = self.data, self.lens, self.objs
        pos = k = 0  # segment k starts at pos
        dropped = 0
        left = 0  # features a bucket left (their values may have changed since the last read)
        gone = 0  # object states dropped so far
        for i, bit, _, _, j in plan.held(self.held):
            n = lens[k]
            width, keep = reach[i]
            if width and crossed & bit:
                kern = kernels[i]
                assert kern is not None and kern.windowed
                first = float(top // width - keep + 1)
                if j >= 0:
                    buckets = objs[j - gone]  # type: ignore[index]
                    before = len(buckets)
                    if not kern.evict(buckets, 0, 0, first):
                        del objs[j - gone]  # type: ignore[union-attr]
                        gone += 1
                        del lens[k]
                        dropped |= bit
                        continue
                    if len(buckets) < before:
                        left |= bit
                else:
                    before = n
                    n = kern.evict(data, pos, n, first)
                    if n == kern.head:  # no bucket left
                        del data[pos : pos + n]
                        del lens[k]
                        dropped |= bit
                        continue
                    if n < before:
                        left |= bit
                    lens[k] = n
            pos += n
            k += 1
        self.dirty |= left
        if dropped:
            self.held &= ~dropped
            self.dirty |= dropped
            if not objs:
                self.objs = None

    def values(self, as_of: int) -> dict[str, float]:
        """Every feature with a value as of event time `as_of` (>= every accepted ts)."""
        plan = self._plan
        out = plan.empty.copy()
        data, objs = self.data, self.objs
        at = float(as_of)  # kernels take times as floats
        pos = 0
        v: float | None
        lens = self.lens
        for k, (_, _, name, kern, j) in enumerate(plan.held(self.held)):
            n = lens[k]
            v = kern.value(objs[j], 0, 0, at) if j >= 0 else kern.value(data, pos, n, at)  # type: ignore[index]
            pos += n
            if v is not None:
                out[name] = v
            else:
                out.pop(name, None)
        names = plan.names
        for i, fn in plan.exprs:
            v = fn(out)
            if v is not None:
                out[names[i]] = v
        return out

    def read(self, bits: int, as_of: int) -> dict[str, float]:
        """The features in `bits` that have a value as of `as_of`, as `values` gives them
        (with an expr among them, the features it reads too): a model's inputs without the
        whole map."""
        plan = self._plan
        bits = plan.read_bits(bits)
        out: dict[str, float] = {}
        data, objs = self.data, self.objs
        held = self.held
        at = float(as_of)  # kernels take times as floats
        pos = 0
        v: float | None
        lens = self.lens
        for k, (_, bit, name, kern, j) in enumerate(plan.held(held)):
            n = lens[k]
            if bits & bit:
                v = kern.value(objs[j], 0, 0, at) if j >= 0 else kern.value(data, pos, n, at)  # type: ignore[index]
                if v is not None:
                    out[name] = v
            pos += n
        rest = bits & ~held & ~plan.expr_bits
        names, empty = plan.names, plan.empty
        while rest:  # features without state: their empty values
            low = rest & -rest
            rest ^= low
            name = names[low.bit_length() - 1]
            if name in empty:
                out[name] = empty[name]
        for i, fn in plan.exprs:
            if bits >> i & 1:
                v = fn(out)
                if v is not None:
                    out[names[i]] = v
        return out

    @property
    def plan(self) -> FeaturePlan:
        return self._plan

    def changed(
        self, as_of: int, since: int, full: Mapping[str, float] | None = None
    ) -> tuple[dict[str, float], list[str]]:
        """Features whose value may differ from what they were as of `since`: those events
        touched since the last call, those that move with time (recency, decay), windows
        a bucket holding data left, and every expr. Returns (values, names now absent).

        `full`, when the caller has it, is ``values(as_of)``: the values are read from it
        instead of computed again."""
        values, gone, _ = self.changed_bits(as_of, since, full)
        return values, gone

    def _left(self, bits: int, early: int, late: int) -> int:
        """Of the windowed features in `bits` (no event touched since `early` or `late`),
        those whose value differs between the two times: a bucket holding data is in one
        window and not the other. Their buckets are all at or before both times' buckets,
        so that is a bucket behind the later window's start and not behind the earlier's."""
        plan = self._plan
        edges = plan.edges
        data, objs = self.data, self.objs
        out = 0
        pos = 0
        lens = self.lens
        for h, (i, bit, _, _, j) in enumerate(plan.held(self.held)):
            n = lens[h]
            if bits & bit:
                width, nb, windows, head, step = edges[i]
                # The bucket indices: every other item of an object state's list, else every
                # `step`-th number of the segment after its head.
                seq: Any = objs[j] if j >= 0 else data  # type: ignore[index]
                start, end, stride = (0, len(seq), 2) if j >= 0 else (pos + head, pos + n, step)
                lo, hi = early // width, late // width
                for k in range(1, windows + 1):
                    first, last = float(lo - k * nb + 1), float(hi - k * nb + 1)  # [first, last) left
                    q = start
                    while q < end and not first <= seq[q] < last:
                        q += stride
                    if q < end:
                        out |= bit
                        break
            pos += n
        return out

    def changed_bits(
        self, as_of: int, since: int, full: Mapping[str, float] | None = None
    ) -> tuple[dict[str, float], list[str], int]:
        """`changed`, and the bits of every feature it answers for (exprs included): those
        not gone hold the values returned."""
        plan = self._plan
        mask = self.dirty
        self.dirty = 0
        held = self.held
        mask |= held & plan.continuous
        sweep = plan.sweep_ms
        if sweep and (not plan.nested or as_of // sweep != since // sweep):
            crossed = plan.crossed(since, as_of) & held & ~mask
            if crossed:
                mask |= self._left(crossed, min(as_of, since), max(as_of, since))
        out: dict[str, float] = {}
        gone: list[str] = []
        if not mask:
            return out, gone, 0
        if full is not None:
            return (*_pick(full, mask, plan), mask | plan.expr_bits)
        # An expr reads only the features it names: read those too, for the exprs only.
        env: dict[str, float] = {}
        read = mask | plan.expr_inputs if plan.exprs else mask
        data, objs = self.data, self.objs
        at = float(as_of)  # kernels take times as floats
        pos = 0
        v: float | None
        lens = self.lens
        for k, (_, bit, name, kern, j) in enumerate(plan.held(held)):
            n = lens[k]
            if read & bit:
                v = kern.value(objs[j], 0, 0, at) if j >= 0 else kern.value(data, pos, n, at)  # type: ignore[index]
                if not mask & bit:
                    if v is not None:
                        env[name] = v
                elif v is None:
                    gone.append(name)
                else:
                    out[name] = v
            pos += n
        rest = read & ~held
        if rest:  # features without state: their empty values, in plan order with the rest
            names, empty, index = plan.names, plan.empty, plan.index
            while rest:
                low = rest & -rest
                rest ^= low
                name = names[low.bit_length() - 1]
                v = empty.get(name)
                if not mask & low:
                    if v is not None:
                        env[name] = v
                elif v is None:
                    gone.append(name)
                else:
                    out[name] = v
            if mask & ~held:  # some came after the held ones: back in plan order
                out = {n: out[n] for n in sorted(out, key=index.__getitem__)}
                gone.sort(key=index.__getitem__)
        if plan.exprs:
            env.update(out)
            names = plan.names
            for i, fn in plan.exprs:
                v = fn(env)
                if v is None:
                    gone.append(names[i])
                else:
                    out[names[i]] = env[names[i]] = v
        return out, gone, mask | plan.expr_bits

    def absorb(self, other: ProfileFeatures) -> None:
        """Take in `other`'s state (another profile's, bound to the same plan), feature by
        feature with its kernel's merge: what one profile would hold had it seen the events
        of both (a merge of two persons). Every feature held is marked changed."""
        plan = self._plan
        if other.max_ts > self.max_ts:
            self.max_ts = other.max_ts
        theirs = dict(other._states())
        if not theirs:
            return
        mine = dict(self._states())
        data, lens = array("d"), array("H")
        objs: list[Any] = []
        held = self.held | other.held
        kernels = plan.kernels
        for i, _, _, _, _ in plan.held(held):
            k = kernels[i]
            assert k is not None  # only kernels hold state
            a, b = mine.get(i), theirs.get(i)
            _append(
                k,
                k.merge(a, b) if a is not None and b is not None else a if b is None else b,
                data,
                lens,
                objs,
            )
        self.data, self.lens, self.objs, self.held = data, lens, objs or None, held
        self.dirty |= held
        if plan.sweep_ms:
            self._expire()

    def live(self, as_of: int) -> bool:
        """True while some windowed feature may still change as time passes."""
        return self.max_ts >= 0 and as_of - self.max_ts <= self._plan.horizon_ms

    def _states(self) -> Iterator[tuple[int, Any]]:
        """(position, state) of each held feature, lowest first: a segment's numbers (an
        ``array('d')`` copy), or an object state itself."""
        data, objs = self.data, self.objs
        pos = 0
        for (i, _, _, _, j), n in zip(self._plan.held(self.held), self.lens, strict=True):
            yield i, objs[j] if j >= 0 else data[pos : pos + n]  # type: ignore[index]
            pos += n

    def buckets_held(self) -> dict[str, int]:
        """The features holding state, each with the number of buckets it holds (0 when
        unwindowed)."""
        plan = self._plan
        out = {}
        for i, st in self._states():
            k = plan.kernels[i]
            assert k is not None
            if k.fresh is None:
                out[plan.names[i]] = len(st) // 2  # distinct: bucket, values, ...
            else:
                out[plan.names[i]] = (len(st) - k.head) // k.step if k.step else 0
        return out

    def states(self) -> dict[str, Any]:
        """Each feature holding state, by name: its segment's numbers (an ``array('d')``
        copy) or its object state; what a snapshot carries."""
        names = self._plan.names
        return {names[i]: st for i, st in self._states()}

    def __getstate__(self) -> tuple[int, int, dict[str, tuple[str, Any]]]:
        if self._saved is not None:  # restored and not bound yet: save what was restored
            return self.lateness_ms, self.max_ts, self._saved
        plan = self._plan
        states = {plan.names[i]: (plan.fingerprints[i], st) for i, st in self._states()}
        return self.lateness_ms, self.max_ts, states

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        # (plan key, lateness, max_ts, states) from snapshots that named their plan
        self.lateness_ms, self.max_ts, self._saved = state[-3:]
        self.data, self.lens, self.objs, self.held, self.dirty = array("d"), array("H"), None, 0, 0

    def bind(self, plan: FeaturePlan) -> None:
        """Attach restored state to the running `plan`, feature by feature: a state is kept
        only where the declaration's fingerprint is unchanged."""
        saved = self._saved or {}
        self._plan = plan
        self._saved = None
        data, lens = array("d"), array("H")
        objs: list[Any] = []
        held = 0
        for i, name in enumerate(plan.names):
            got = saved.get(name)
            k = plan.kernels[i]
            if got is None or got[0] != plan.fingerprints[i] or k is None:
                continue
            _append(k, restored(got[1]), data, lens, objs)
            held |= 1 << i
        self.data, self.lens, self.objs, self.held, self.dirty = data, lens, objs or None, held, held


def _append(k: Kernel, st: Any, data: array[float], lens: array[int], objs: list[Any]) -> None:
    """Add one feature's state after the others: its segment's numbers, or its object."""
    if k.fresh is None:
        objs.append(st)
        lens.append(0)
    else:
        data.extend(st)
        lens.append(len(st))


def _pick(full: Mapping[str, float], mask: int, plan: FeaturePlan) -> tuple[dict[str, float], list[str]]:
    """`changed`'s answer read from a full map: the masked features in plan order, then
    every expr."""
    out: dict[str, float] = {}
    gone: list[str] = []
    names = plan.names
    rest = mask
    while rest:
        low = rest & -rest
        rest ^= low
        name = names[low.bit_length() - 1]
        v = full.get(name)
        if v is None:
            gone.append(name)
        else:
            out[name] = v
    for i, _ in plan.exprs:
        v = full.get(names[i])
        if v is None:
            gone.append(names[i])
        else:
            out[names[i]] = v
    return out, gone
