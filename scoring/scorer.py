"""Serving a published model: a score and its explanation for an input vector.

Two ways, chosen when a version is installed:

* **Linear** (``LogisticRegression``, alone or after ``StandardScaler``): the weights, means
  and variances are copied out once, and a score is a plain loop over the inputs. The
  explanation is exact: each input's contribution to the logit is ``weight × scaled
  value`` (``(x - mean) / std``, 0 for a constant input), the same arithmetic River does,
  so the score equals ``predict_proba_one`` (a unit test checks it).
* **Any other classifier**: ``predict_proba_one`` on a private copy, and the explanation
  by occlusion: an input's contribution is the score minus the score without that input
  (River treats a missing input as absent). It costs one prediction per input; the
  numbers are in probability units, not logit units, and ``scores.explanation`` says so
  only through the model's pipeline (documented in docs/design.md).

Either way the top ``explain_top`` contributions by absolute size are kept.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Protocol

from river import compose, linear_model, preprocessing

from scoring.calibration import Knots, apply

Explanation = tuple[tuple[str, float], ...]


class Scorer(Protocol):
    """What serving needs of a model: a probability and its explanation for an input, or
    the probability alone (a rescoring that may write no row needs no explanation)."""

    def score(self, x: Mapping[str, float]) -> tuple[float, Explanation]: ...

    def probability(self, x: Mapping[str, float]) -> float: ...


def _sigmoid(z: float) -> float:
    # River's `utils.math.sigmoid`, saturating the same way.
    if z < -30:
        return 0.0
    if z > 30:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))


class _Top:
    """The `k` largest contributions by size, ties by name, kept as they are offered: one
    pass, the best k in order (no sort of them all, no key function per item)."""

    __slots__ = ("k", "names", "sizes", "values")

    def __init__(self, k: int) -> None:
        self.k = k
        self.sizes: list[float] = []  # descending
        self.names: list[str] = []
        self.values: list[float] = []

    def offer(self, name: str, v: float) -> None:
        sizes, names = self.sizes, self.names
        a = abs(v)
        n = len(sizes)
        if n == self.k and (a < sizes[-1] or (a == sizes[-1] and name > names[-1])):
            return
        i = 0
        while i < n and (sizes[i] > a or (sizes[i] == a and names[i] < name)):
            i += 1
        sizes.insert(i, a)
        names.insert(i, name)
        self.values.insert(i, v)
        if n == self.k:
            sizes.pop()
            names.pop()
            self.values.pop()

    def explanation(self) -> Explanation:
        values = self.values
        return tuple([(name, round(values[i], 6)) for i, name in enumerate(self.names)])


def _top(contribs: dict[str, float], k: int) -> Explanation:
    if k <= 0:
        return ()
    top = _Top(k)
    for name, v in contribs.items():
        top.offer(name, v)
    return top.explanation()


class LinearScorer:
    """Scaler + logistic regression, unrolled: per input, the contribution to the logit is
    ``scale * (x - offset)`` (``weight / std`` and the mean with a scaler, else the weight
    and 0); inputs without weight (or with zero variance) contribute nothing."""

    __slots__ = ("coef", "intercept", "k")

    def __init__(self, model: Any, k: int) -> None:
        steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else [model]
        scaler = steps[0] if len(steps) == 2 else None
        lr = steps[-1]
        self.intercept = float(lr.intercept)
        self.coef: dict[str, tuple[float, float]] = {}
        for name, w in lr.weights.items():
            if not w:
                continue
            if scaler is None:
                self.coef[name] = (float(w), 0.0)
                continue
            var = scaler.vars.get(name, 0.0)
            if var:
                self.coef[name] = (w / var**0.5, float(scaler.means[name]))
        self.k = k

    @staticmethod
    def supports(model: Any) -> bool:
        steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else [model]
        if not isinstance(steps[-1], linear_model.LogisticRegression):
            return False
        if len(steps) == 1:
            return True
        sc = steps[0]
        return (
            len(steps) == 2
            and type(sc) is preprocessing.StandardScaler
            and sc.with_std
            and sc.window_size is None
        )

    def score(self, x: Mapping[str, float]) -> tuple[float, Explanation]:
        """The score, and the top `k` contributions kept as they come (no dict of them all)."""
        coef = self.coef
        z = self.intercept
        top = _Top(self.k) if self.k > 0 else None
        for name, v in x.items():
            c = coef.get(name)
            if c is not None:
                t = c[0] * (v - c[1])
                z += t
                if top is not None:
                    top.offer(name, t)
        return _sigmoid(z), top.explanation() if top is not None else ()

    def probability(self, x: Mapping[str, float]) -> float:
        coef = self.coef
        z = self.intercept
        for name, v in x.items():
            c = coef.get(name)
            if c is not None:
                z += c[0] * (v - c[1])
        return _sigmoid(z)


class GenericScorer:
    """Any River classifier, explained by occlusion."""

    __slots__ = ("k", "model")

    def __init__(self, model: Any, k: int) -> None:
        self.model = copy.deepcopy(model)
        self.k = k

    def probability(self, x: Mapping[str, float]) -> float:
        return predict(self.model, x)

    def score(self, x: Mapping[str, float]) -> tuple[float, Explanation]:
        p = predict(self.model, x)
        if self.k <= 0:
            return p, ()
        contribs = {name: p - predict(self.model, {n: v for n, v in x.items() if n != name}) for name in x}
        return p, _top(contribs, self.k)


class CalibratedScorer:
    """A scorer whose probability goes through the version's calibration map
    (`scoring.calibration`); the explanation stays the model's own (logit units for a
    linear model: the map is monotone, so the order of the contributions holds)."""

    __slots__ = ("inner", "knots")

    def __init__(self, inner: LinearScorer | GenericScorer, knots: Knots) -> None:
        self.inner = inner
        self.knots = knots

    def score(self, x: Mapping[str, float]) -> tuple[float, Explanation]:
        p, why = self.inner.score(x)
        return apply(self.knots, p), why

    def probability(self, x: Mapping[str, float]) -> float:
        return apply(self.knots, self.inner.probability(x))


def make_scorer(model: Any, k: int) -> LinearScorer | GenericScorer:
    return LinearScorer(model, k) if LinearScorer.supports(model) else GenericScorer(model, k)


def predict(model: Any, x: Mapping[Any, float]) -> float:
    """P(label = 1) from a River classifier (labels are learned as bools)."""
    proba = model.predict_proba_one(dict(x))
    return float(proba.get(True, proba.get(1, 0.0)))
