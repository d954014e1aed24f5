"""A `FeatureSet` compiled for the per-event path: which features each event type touches,
their matchers and value getters, bucket widths and reach, tag inputs, empty values.

Compiled once when the dataflow is built and handed to every profile's state; nothing
about it is kept in module globals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from flows.core.conditions import field_getter, matcher
from flows.features.aggregates import EMPTY_VALUE
from flows.features.declarations import FeatureDef, FeatureSet
from flows.features.expressions import compile_expr, expr_refs


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
        self.empty = {d.name: EMPTY_VALUE[d.agg] for d in fs.features if d.agg in EMPTY_VALUE}
        index = {d.name: i for i, d in enumerate(fs.features)}
        self.index = index  # name -> position
        self._tag_sets: dict[frozenset[str], frozenset[str]] = {}
        self.expr_inputs = sorted(
            {index[n] for d in fs.features if d.agg == "expr" for n in expr_refs(d.expr or "0")}
        )
        self.horizon_ms = max((d.window_ms * (2 if d.agg == "trend" else 1) for d in fs.features), default=0)
        for i, d in enumerate(fs.features):
            if d.agg == "expr":
                self.exprs.append((i, compile_expr(d.expr or "0")))
                continue
            entry = (i, d, matcher(d.where), field_getter(d.value) if d.value else None, d.bucket_ms)
            if d.types:
                for t in d.types:
                    self._by_type.setdefault(t, []).append(entry)
            else:
                self._any.append(entry)
        self._cache: dict[str, list[tuple[int, FeatureDef, Any, Any, int]]] = {}
        # One key for the whole declaration set (tests and tools compare plans by it).
        self.key = hashlib.sha1("|".join(self.fingerprints).encode(), usedforsecurity=False).hexdigest()[:16]

    def for_type(self, etype: str) -> list[tuple[int, FeatureDef, Any, Any, int]]:
        got = self._cache.get(etype)
        if got is None:
            got = sorted(self._by_type.get(etype, []) + self._any, key=lambda e: e[0])
            if len(self._cache) < 10_000:
                self._cache[etype] = got
        return got

    def bits(self, names: Iterable[str]) -> int:
        """The features named, as a bit mask over their positions (unknown names ignored)."""
        index = self.index
        out = 0
        for n in names:
            i = index.get(n)
            if i is not None:
                out |= 1 << i
        return out

    def names_of(self, bits: int) -> tuple[str, ...]:
        """The names of the features in a bit mask, in plan order."""
        names = self.names
        return tuple(names[i] for i in range(len(names)) if bits >> i & 1)

    def tag_set(self, tags: frozenset[str]) -> frozenset[str]:
        """One shared instance per distinct set of tags (profiles hold few distinct sets)."""
        return self._tag_sets.setdefault(tags, tags)
