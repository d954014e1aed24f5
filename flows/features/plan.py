"""A `FeatureSet` compiled for the per-event path: which features each event type touches,
their matchers, value getters and kernels, bucket widths and reach, tag inputs, empty values.

Compiled once when the dataflow is built and handed to every profile's state; nothing
about it is kept in module globals.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

from flows.core.conditions import COMPARE, field_getter, matcher
from flows.features.aggregates import EMPTY_VALUE, Kernel, kernel
from flows.features.declarations import FeatureDef, FeatureSet
from flows.features.expressions import compile_expr, expr_refs

NAN = float("nan")

# One feature an event type touches: (position, its bit, the bits of the features between
# the type's previous one and it, matcher, value getter, kernel, a new state's segment or
# None for an object state).
Entry = tuple[int, int, int, Any, Any, Kernel, "array[float] | None"]
_Feature = tuple[int, Any, Any, Kernel, "array[float] | None"]
# One feature holding state, as reads walk them: (position, its bit, name, kernel, where
# its object state is among the profile's objects, -1 when it has a segment).
Held = tuple[int, int, str, Kernel, int]


def _first(f: _Feature) -> int:
    return f[0]


def fingerprint(d: FeatureDef) -> str:
    """A short hash of the declaration `d`, the same in every process: its repr with each
    set's elements sorted (a set's own order follows the process's hash seed)."""
    text = repr(d)
    for s in (d.types, *(c.value for c in d.where)):
        if isinstance(s, frozenset) and len(s) > 1:
            text = text.replace(repr(s), "frozenset({" + ", ".join(sorted(map(repr, s))) + "})")
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


class FeaturePlan:
    """A FeatureSet compiled for speed: which features each event type touches."""

    def __init__(self, fs: FeatureSet) -> None:
        self.features = fs.features
        self.names = [d.name for d in fs.features]
        self.fingerprints = [fingerprint(d) for d in fs.features]
        self._by_type: dict[str, list[_Feature]] = {}
        self._any: list[_Feature] = []
        self.exprs: list[tuple[int, Callable[[dict[str, float]], float | None]]] = []
        # Per feature: its kernel (None for an expr). `objects`: the features whose state is
        # an object (a profile keeps those in a list, in plan order), not a segment.
        self.kernels: list[Kernel | None] = [None if d.agg == "expr" else kernel(d) for d in fs.features]
        self.objects = sum(1 << i for i, k in enumerate(self.kernels) if k is not None and k.fresh is None)
        self._held: dict[int, tuple[Held, ...]] = {}
        self._segment_held: dict[int, Held] = {
            i: (i, 1 << i, self.names[i], k, -1)
            for i, k in enumerate(self.kernels)
            if k is not None and k.fresh is not None
        }
        # Features that move with time (recency, decay), and the windowed ones by bucket width.
        self.continuous = sum(
            1 << i for i, d in enumerate(fs.features) if d.agg in ("recency", "decayed_sum", "age")
        )
        widths: dict[int, int] = {}
        for i, d in enumerate(fs.features):
            if d.bucket_ms:
                widths[d.bucket_ms] = widths.get(d.bucket_ms, 0) | 1 << i
        self.windowed = sorted(widths.items())
        # Per feature: (bucket width, buckets any read or write can still reach behind the
        # newest event's bucket); (0, 0) for unwindowed ones. Sweeps run when the newest
        # event time crosses a `sweep_ms` edge (the narrowest bucket).
        self.reach = [
            (d.bucket_ms, d.buckets * (2 if d.agg == "trend" else 1)) if d.bucket_ms else (0, 0)
            for d in fs.features
        ]
        self.sweep_ms = min((w for w, _ in self.reach if w), default=0)
        # Per windowed feature, where its buckets are: (bucket width, buckets per window,
        # windows (2 for a trend), numbers before the buckets, numbers per bucket; 0 for an
        # object state, whose list alternates bucket and values). A window's value changes
        # with time only when a bucket holding data leaves it (`ProfileFeatures.changed_bits`).
        self.edges = [
            (d.bucket_ms, d.buckets, 2 if d.agg == "trend" else 1, k.head, k.step)
            if d.bucket_ms and k is not None
            else (0, 0, 0, 0, 0)
            for d, k in zip(fs.features, self.kernels, strict=True)
        ]
        # Every width a multiple of the narrowest: no window moves while that one does not.
        self.nested = all(w % self.sweep_ms == 0 for w in widths)
        self.tags = fs.tags
        self.rfm = fs.rfm
        self.segments = fs.segments
        rfm_inputs = (fs.rfm.recency, fs.rfm.frequency, fs.rfm.monetary) if fs.rfm else ()
        self.tag_inputs = frozenset([*(f for t in fs.tags for f, _, _ in t.when), *rfm_inputs])
        # A profile holds the values tags and RFM read as one array('d') in this order, NaN
        # for a feature without a value; the tag rules and RFM read it by position.
        self.tag_input_names = tuple(sorted(self.tag_inputs))
        at = {n: i for i, n in enumerate(self.tag_input_names)}
        self.tag_tests = tuple(
            (t.name, tuple((at[f], COMPARE[op], float(limit)) for f, op, limit in t.when)) for t in fs.tags
        )
        self.rfm_at = (at[rfm_inputs[0]], at[rfm_inputs[1]], at[rfm_inputs[2]]) if rfm_inputs else (0, 0, 0)
        # Values of features no event touched yet: one dict, copied per read.
        self.empty = {d.name: EMPTY_VALUE[d.agg] for d in fs.features if d.agg in EMPTY_VALUE}
        index = {d.name: i for i, d in enumerate(fs.features)}
        self.index = index  # name -> position
        self._bit = {n: 1 << i for n, i in index.items()}
        # The tag inputs as bits, and per feature its place among them (-1: not one).
        self.tag_input_bits = sum(1 << index[n] for n in self.tag_inputs)
        self.tag_input_of = [at.get(n, -1) for n in self.names]
        self._tag_sets: dict[frozenset[str], frozenset[str]] = {}
        # Per expr, the features it reads as bits; and all that exprs read.
        self._expr_reads = [
            (i, sum(1 << index[n] for n in expr_refs(d.expr or "0")))
            for i, d in enumerate(fs.features)
            if d.agg == "expr"
        ]
        self.expr_inputs = 0
        for _, reads in self._expr_reads:
            self.expr_inputs |= reads
        self.horizon_ms = max((d.window_ms * (2 if d.agg == "trend" else 1) for d in fs.features), default=0)
        for i, (d, k) in enumerate(zip(fs.features, self.kernels, strict=True)):
            if k is None:
                self.exprs.append((i, compile_expr(d.expr or "0")))
                continue
            get = field_getter(d.value) if d.value else None
            entry: _Feature = (i, matcher(d.where), get, k, k.fresh)
            if d.types:
                for t in d.types:
                    self._by_type.setdefault(t, []).append(entry)
            else:
                self._any.append(entry)
        self._cache: dict[str, list[Entry]] = {}
        self._read_bits: dict[int, int] = {}  # the bits a read computes, by the bits asked
        # One key for the whole declaration set (tests and tools compare plans by it).
        self.key = hashlib.sha1("|".join(self.fingerprints).encode(), usedforsecurity=False).hexdigest()[:16]

    def for_type(self, etype: str) -> list[Entry]:
        """The features events of type `etype` may touch, in plan order."""
        got = self._cache.get(etype)
        if got is None:
            got = []
            after = 0  # the bits from the type's previous feature on
            for i, match, get, kern, fresh in sorted(self._by_type.get(etype, []) + self._any, key=_first):
                got.append((i, 1 << i, ((1 << i) - 1) & ~after, match, get, kern, fresh))
                after = (1 << (i + 1)) - 1
            if len(self._cache) < 10_000:
                self._cache[etype] = got
        return got

    def held(self, bits: int) -> tuple[Held, ...]:
        """The features in `bits` (each with a kernel), lowest first; one shared tuple per
        distinct set (profiles hold few distinct sets; the cache is emptied when it holds
        65,536, so its memory stays bounded whatever the mix)."""
        got = self._held.get(bits)
        if got is None:
            out: list[Held] = []
            objects = 0  # object states before this one
            rest = bits
            while rest:
                low = rest & -rest
                rest ^= low
                i = low.bit_length() - 1
                k = self.kernels[i]
                if k is None:
                    continue
                if k.fresh is None:
                    out.append((i, low, self.names[i], k, objects))
                    objects += 1
                else:
                    out.append(self._segment_held[i])  # shared by every set
            got = tuple(out)
            if len(self._held) >= 65_536:
                self._held.clear()
            self._held[bits] = got
        return got

    def read_bits(self, bits: int) -> int:
        """`bits` and the features the exprs among them read, through exprs of exprs: what
        a read of `bits` computes (not every expr and all their inputs)."""
        if not bits & self.expr_bits:
            return bits
        got = self._read_bits.get(bits)
        if got is None:
            got = more = bits
            while True:
                for i, reads in self._expr_reads:
                    if got >> i & 1:
                        more |= reads
                if more == got:
                    break
                got = more
            if len(self._read_bits) < 10_000:
                self._read_bits[bits] = got
        return got

    @cached_property
    def expr_bits(self) -> int:
        """The expr features, as bits (every `changed` answer includes them)."""
        return sum(1 << i for i, _ in self.exprs)

    def bits(self, names: Iterable[str]) -> int:
        """The features named, as a bit mask over their positions (unknown names ignored)."""
        bit = self._bit.get
        out = 0
        for n in names:
            out |= bit(n, 0)
        return out

    def crossed(self, a: int, b: int) -> int:
        """The windowed features whose bucket edge lies between event times `a` and `b`."""
        out = 0
        for width, bits in self.windowed:
            if a // width != b // width:
                out |= bits
        return out

    def names_of(self, bits: int) -> tuple[str, ...]:
        """The names of the features in a bit mask, in plan order."""
        names = self.names
        return tuple(names[i] for i in range(len(names)) if bits >> i & 1)

    def tag_vector(self, values: dict[str, float] | None = None) -> Any:
        """The array of tag and RFM inputs, from a map by name (NaN where it has none).

        >>> from flows.features.declarations import parse_features
        >>> plan = FeaturePlan(parse_features({"feature": [
        ...     {"name": "orders", "agg": "count", "types": ["order_paid"], "window": "90d"}],
        ...     "tag": [{"name": "buyer", "when": [["orders", ">=", 1]]}]}))
        >>> plan.tag_vector({"orders": 2.0}), plan.tag_vector()
        (array('d', [2.0]), array('d', [nan]))
        >>> plan.tags_holding(plan.tag_vector({"orders": 2.0})), plan.tags_holding(plan.tag_vector())
        (frozenset({'buyer'}), frozenset())
        """
        values = values or {}
        return array("d", [values.get(n, NAN) for n in self.tag_input_names])

    def tag_values(self, inputs: Any) -> dict[str, float]:
        """The inverse of `tag_vector`: the inputs that have a value, by name."""
        return {n: v for n, v in zip(self.tag_input_names, inputs, strict=True) if v == v}

    def tags_holding(self, inputs: Any) -> frozenset[str]:
        """The tags whose every condition holds on `inputs` (a `tag_vector`); an input
        without a value fails its conditions."""
        out: list[str] = []
        for name, tests in self.tag_tests:
            for i, compare, limit in tests:
                v: float = inputs[i]
                if v != v or not compare(v, limit):
                    break
            else:
                out.append(name)
        return self.tag_set(frozenset(out))

    def tag_set(self, tags: frozenset[str]) -> frozenset[str]:
        """One shared instance per distinct set of tags (profiles hold few distinct sets)."""
        return self._tag_sets.setdefault(tags, tags)
