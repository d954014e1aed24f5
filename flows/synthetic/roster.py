"""Who acts next: a weighted draw (weight ``0.02 + engagement``) among the profiles that are
not silent, and the churners' silences with their wake-ups.

The draw is a bisection in a cumulative weight table. A silenced profile keeps its entry
(it is rejected when drawn) until silent weight passes half the table, which is then
rebuilt; a woken profile without an entry is appended. Wake-ups wait in a heap keyed by
the caller time their silence ends.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_right

from flows.synthetic.profile import Profile
from flows.synthetic.traits import CHURN_SILENCE_MS

__all__ = ["Roster"]


class Roster:
    """The profiles in play: ``pick(now_ms)`` draws the one that acts, ``silence(p, now_ms)``
    takes a churner out for ``CHURN_SILENCE_MS``."""

    __slots__ = ("_active", "_cum", "_idx", "_profiles", "_rnd", "_silent_weight", "_total", "_wake_heap")

    def __init__(self, profiles: list[Profile], rng: random.Random) -> None:
        self._profiles = profiles
        self._rnd = rng.random
        self._wake_heap: list[tuple[int, int]] = []  # (silent_until, profile index)
        self._cum: list[float] = []
        self._idx: list[int] = []
        self._total = 0.0
        self._silent_weight = 0.0  # weight of silent profiles still in the table
        self._active = len(profiles)
        self._rebuild()

    def pick(self, now_ms: int) -> Profile:
        """The acting profile at caller time ``now_ms``, waking the silences that ended."""
        heap = self._wake_heap
        if (heap and heap[0][0] <= now_ms) or not self._active:
            self._wake_due(now_ms)
        rnd = self._rnd
        cum = self._cum
        total = self._total
        profiles = self._profiles
        idx = self._idx
        while True:
            try:
                p = profiles[idx[bisect_right(cum, rnd() * total)]]
            except IndexError:  # rnd() * total rounded up to total
                p = profiles[idx[-1]]
            if not p.silent:
                return p

    def silence(self, p: Profile, now_ms: int) -> None:
        p.silent = True
        p.churned = True
        p.silent_since = now_ms
        p.silent_until = now_ms + CHURN_SILENCE_MS
        heapq.heappush(self._wake_heap, (p.silent_until, p.index))
        self._active -= 1
        self._silent_weight += p.weight
        if self._active and self._silent_weight > 0.5 * self._total:
            self._rebuild()

    def _rebuild(self) -> None:
        cum: list[float] = []
        idx: list[int] = []
        total = 0.0
        for p in self._profiles:
            if p.silent:
                p.in_table = False
                continue
            total += p.weight
            cum.append(total)
            idx.append(p.index)
            p.in_table = True
        self._cum, self._idx, self._total, self._silent_weight = cum, idx, total, 0.0

    def _wake(self, index: int) -> None:
        p = self._profiles[index]
        p.silent = False
        self._active += 1
        if p.in_table:
            self._silent_weight -= p.weight
        else:
            self._total += p.weight
            self._cum.append(self._total)
            self._idx.append(index)
            p.in_table = True

    def _wake_due(self, now_ms: int) -> None:
        heap = self._wake_heap
        while heap and heap[0][0] <= now_ms:
            self._wake(heapq.heappop(heap)[1])
        if not self._active:  # everybody silent: wake the one due first (never stall)
            self._wake(heapq.heappop(heap)[1])
