"""Calibrated probabilities: served scores mean what they say ("0.7" = 70 % of such
profiles churn), so journey thresholds read probabilities, not model-specific numbers.

The learner keeps, per model, resolved labels binned by the model's raw score (40 bins
on the logit scale, counts decayed so the map follows the model as it learns). At every
publish the bins are made monotone by isotonic regression (pool adjacent violators,
weighted by the counts) and the result — knots ``(logit, probability)`` — travels with
the version; scorers map a raw score through it by linear interpolation in the logit.

Why isotonic over bins, not Platt scaling: Platt fits one sigmoid to the raw logit and so
assumes the miscalibration has that shape; an online linear model trained on labels of
a moving horizon, and scored on silent profiles further out than most of its examples,
bends in other ways. Isotonic regression assumes only that a higher raw score means a
higher risk, so it keeps the model's ranking (ROC AUC unchanged, up to the tiny tie-break
below) and needs a few hundred labels, which binning makes constant-time and bounded.
Until ``min_labels`` labels the map is the identity.

>>> c = Calibrator(min_labels=10)
>>> for p, y in [(0.2, 0)] * 30 + [(0.2, 1)] * 10 + [(0.8, 0)] * 10 + [(0.8, 1)] * 10:
...     c.update(p, y)
>>> knots = c.knots()
>>> round(apply(knots, 0.2), 2), round(apply(knots, 0.8), 2)
(0.25, 0.51)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

Knots = tuple[tuple[float, ...], tuple[float, ...]]  # (logits ascending, probabilities)
LOGIT_LO, LOGIT_HI, BINS = -8.0, 8.0, 40
_WIDTH = (LOGIT_HI - LOGIT_LO) / BINS
_EPS = 1e-6
STATE_FIELDS = ("decay", "min_labels", "n", "pos", "seen")  # a Calibrator's pickled state, in order


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


class Calibrator:
    """Decayed label counts per raw-score bin (picklable: part of the learner's state)."""

    __slots__ = ("decay", "min_labels", "n", "pos", "seen")

    def __init__(self, min_labels: int = 500, memory: int = 20_000) -> None:
        self.min_labels = min_labels
        self.decay = 1.0 - 1.0 / memory  # a label's weight halves after ~0.7 x memory labels
        self.n = [0.0] * BINS
        self.pos = [0.0] * BINS
        self.seen = 0

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.decay, self.min_labels, self.n, self.pos, self.seen)

    def __setstate__(self, state: Any) -> None:
        if state[0] is None:  # pickled by default before this module was compiled: (None, slots)
            state = tuple(state[1][k] for k in STATE_FIELDS)
        self.decay, self.min_labels, self.n, self.pos, self.seen = state

    def update(self, p: float, y: int) -> None:
        b = min(BINS - 1, max(0, int((logit(p) - LOGIT_LO) / _WIDTH)))
        if self.seen % 1000 == 999:  # decay in steps: exact enough, and cheap per label
            f = self.decay**1000
            self.n = [v * f for v in self.n]
            self.pos = [v * f for v in self.pos]
        self.n[b] += 1.0
        self.pos[b] += y
        self.seen += 1

    def knots(self) -> Knots:
        """The monotone map as knots; empty (the identity) before `min_labels`."""
        if self.seen < self.min_labels:
            return ((), ())
        # pool adjacent violators over the non-empty bins, weighted by their counts
        blocks: list[list[float]] = []  # [weight, positives, first bin, last bin]
        for b in range(BINS):
            if self.n[b] <= 0:
                continue
            blocks.append([self.n[b], self.pos[b], b, b])
            while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
                w, s, _, last = blocks.pop()
                blocks[-1][0] += w
                blocks[-1][1] += s
                blocks[-1][3] = last
        xs: list[float] = []
        ps: list[float] = []
        for w, s, first, last in blocks:
            # each block at the count-weighted centre of its bins' logits
            ws = [(self.n[b], LOGIT_LO + (b + 0.5) * _WIDTH) for b in range(int(first), int(last) + 1)]
            x = sum(n * c for n, c in ws) / w
            rate = (s + 0.5 * _prior(x)) / (w + 0.5)  # shrunk a little towards the raw score
            if xs and x <= xs[-1]:
                continue
            xs.append(x)
            ps.append(max(rate, ps[-1]) if ps else rate)
        return tuple(xs), tuple(ps)


def _prior(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def apply(knots: Knots, p: float) -> float:
    """`p` mapped through the knots (linear in the logit between them, flat beyond); a
    tiny share of the raw score breaks ties, so the ranking is kept."""
    xs, ps = knots
    if not xs:
        return p
    x = logit(p)
    i = bisect.bisect_left(xs, x)
    if i == 0:
        q = ps[0]
    elif i == len(xs):
        q = ps[-1]
    else:
        x0, x1 = xs[i - 1], xs[i]
        q = ps[i - 1] + (ps[i] - ps[i - 1]) * (x - x0) / (x1 - x0)
    return min(1.0, max(0.0, 0.999 * q + 0.001 * p))


def deciles(pairs: Sequence[tuple[float, int]]) -> list[tuple[int, int, float, float]]:
    """(decile 1..10 by score, count, mean predicted, share positive): the calibration
    table the reports print, here for the bench and tests."""
    out = []
    for d in range(10):
        got = [(p, y) for p, y in pairs if min(int(p * 10), 9) == d]
        if got:
            n = len(got)
            out.append((d + 1, n, sum(p for p, _ in got) / n, sum(y for _, y in got) / n))
    return out
