"""RFM scores against quantiles over all profiles, maintained incrementally, and segments.

Recency, frequency and monetary value are features (named in ``[rfm]`` of the features
file, by default ``days_since_last_order``, ``orders_90d``, ``revenue_90d``). Each
profile contributes its current values to three histograms shared by the process; when
its values change, its old contribution is moved, so the histograms always describe the
profiles' *current* values. Scores are quintiles: 5 = most recent / most frequent /
highest spend, 1 = least; a profile that never ordered scores 0 on all three.

**Method and error.** The histograms have logarithmic bins growing by ``RATIO`` (10 %)
from ``LOW`` upwards (values below ``LOW``, including 0, share bin 0). A quantile is
read as the upper edge of the bin where the cumulative count crosses it, so a quintile
boundary is exact to within one bin: at most 10 % of the value. Scoring compares a
profile's value with those boundaries, so only a profile within 10 % of a boundary can
land one score away from the exact quintile. The boundaries are recomputed every
``REFRESH`` contributions (and on demand), so they trail the population by at most that
many updates. Each process keeps its own histograms (profiles are hash-partitioned, so
processes see the same distribution); they are rebuilt from restored profile state
after a restart.

>>> h = LogHistogram()
>>> for v in range(1, 101):
...     h.add(float(v))
>>> 80 <= h.quantile(0.8) <= 80 * RATIO   # the exact 80 % quantile is 80
True
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flows.core.conditions import COMPARE

RATIO = 1.1
LOW = 0.01
REFRESH = 1000
_LOG = math.log(RATIO)


def _bin(v: float) -> int:
    if v < LOW:
        return 0
    return 1 + int(math.log(v / LOW) / _LOG)


def _upper(b: int) -> float:
    return LOW if b == 0 else LOW * RATIO**b


class LogHistogram:
    """Counts per logarithmic bin, with add and remove; quantiles to within one bin."""

    __slots__ = ("_counts", "total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.total = 0

    def add(self, v: float) -> None:
        b = _bin(v)
        self._counts[b] = self._counts.get(b, 0) + 1
        self.total += 1

    def remove(self, v: float) -> None:
        b = _bin(v)
        n = self._counts.get(b, 0)
        if n <= 1:
            self._counts.pop(b, None)
        else:
            self._counts[b] = n - 1
        if n:
            self.total -= 1

    def quantile(self, q: float) -> float:
        if self.total == 0:
            return 0.0
        target = q * self.total
        seen = 0
        for b in sorted(self._counts):
            seen += self._counts[b]
            if seen >= target:
                return _upper(b)
        return _upper(max(self._counts))

    def cuts(self) -> tuple[float, float, float, float]:
        """The 20/40/60/80 % boundaries."""
        return (self.quantile(0.2), self.quantile(0.4), self.quantile(0.6), self.quantile(0.8))


def score(v: float, cuts: Sequence[float], higher_is_better: bool = True) -> int:
    """Quintile score 1..5 of `v` against the four boundaries.

    >>> score(10, (1, 2, 3, 4)), score(0.5, (1, 2, 3, 4)), score(0.5, (1, 2, 3, 4), False)
    (5, 1, 5)
    """
    rank = 1 + bisect_left(cuts, v)  # the boundaries below v (they never decrease)
    return rank if higher_is_better else 6 - rank


@dataclass(frozen=True, slots=True)
class RfmConfig:
    recency: str = "days_since_last_order"
    frequency: str = "orders_90d"
    monetary: str = "revenue_90d"


@dataclass(frozen=True, slots=True)
class SegmentDef:
    """A named segment: every [dimension, op, score] condition holds; the first match wins."""

    name: str
    when: tuple[tuple[str, str, int], ...]

    def holds(self, scores: Mapping[str, int]) -> bool:
        for dim, op, limit in self.when:
            v = scores[dim]
            if not COMPARE[op](v, limit):
                return False
        return True


NO_PURCHASE = "prospect"
FALLBACK = "others"


class RfmSketch:
    """Three histograms (recency, frequency, monetary) of every profile a process holds, and
    their cached quintile boundaries. The dataflow makes one per process, shared by its
    workers; each profile's state moves its own values in it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.r = LogHistogram()
        self.f = LogHistogram()
        self.m = LogHistogram()
        self._changes = 0
        self._cuts: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None = None
        self._generation = 0  # moves each time the cuts are computed again

    def move(self, old: tuple[float, float, float] | None, new: tuple[float, float, float] | None) -> None:
        with self._lock:
            if old is not None:
                self.r.remove(old[0])
                self.f.remove(old[1])
                self.m.remove(old[2])
            if new is not None:
                self.r.add(new[0])
                self.f.add(new[1])
                self.m.add(new[2])
            self._changes += 1
            if self._changes >= REFRESH:
                self._cuts = None

    def cuts(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        with self._lock:
            if self._cuts is None:
                self._cuts = (self.r.cuts(), self.f.cuts(), self.m.cuts())
                self._changes = 0
                self._generation += 1
            return self._cuts

    def current(self) -> tuple[int, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]]:
        """The current boundaries (`cuts`) and their generation: equal generations, equal
        boundaries."""
        cuts = self.cuts()
        return self._generation, cuts

    def scores(
        self,
        rfm: tuple[float, float, float] | None,
        cuts: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> dict[str, int]:
        """The quintile scores of `rfm`, against `cuts` when given (else the current ones)."""
        if rfm is None:
            return {"r": 0, "f": 0, "m": 0}
        rc, fc, mc = cuts or self.cuts()
        return {
            "r": score(rfm[0], rc, higher_is_better=False),
            "f": score(rfm[1], fc),
            "m": score(rfm[2], mc),
        }


def segment_of(scores: Mapping[str, int], segments: Sequence[SegmentDef]) -> str:
    if scores["r"] == 0:
        return NO_PURCHASE
    for s in segments:
        if s.holds(scores):
            return s.name
    return FALLBACK
