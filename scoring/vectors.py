"""A model's input vector from what the profile step knows: feature values plus the
engine-computed extras of the model's entity.

Extras (all in event time, as of the observation):

* ``profile_age_days`` — days since the profile's first event (its ``first_seen`` feature);
* ``opp_amount_log`` — log10 of the opportunity amount (at least 1);
* ``opp_age_days`` — days since ``opportunity_created``;
* ``opp_stage_days`` — days in the current stage;
* ``opp_stage_index`` — position of the stage in the model's ``stages`` (0 = first);
* ``opp_activities`` — events on the opportunity other than stage changes (calls, meetings,
  emails, ...);
* ``opp_days_since_touch`` — days between this event and the previous one on the opportunity;
* ``opp_stage_changes`` — stage changes so far.

A feature the profile has no value for is left out of the vector; River's linear models
read a missing input as 0 after scaling, i.e. as the running mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scoring.modeldefs import ModelDef

DAY_MS = 86_400_000.0


class Opportunity:
    """What the profile step keeps about one open opportunity (a few numbers)."""

    __slots__ = ("activities", "amount", "created_ms", "last_touch_ms", "prev_touch_ms", "stage",
                 "stage_changes", "stage_ms")  # fmt: skip

    def __init__(self, created_ms: int) -> None:
        self.created_ms = created_ms
        self.amount = 0.0
        self.stage = ""
        self.stage_ms = created_ms
        self.stage_changes = 0
        self.activities = 0
        self.last_touch_ms = created_ms
        self.prev_touch_ms = created_ms

    def apply(self, etype: str, ts_ms: int, props: Mapping[str, Any], stage_types: frozenset[str]) -> None:
        """Fold in one event on this opportunity."""
        amount = props.get("amount")
        if isinstance(amount, int | float) and not isinstance(amount, bool) and amount > 0:
            self.amount = float(amount)
        stage = props.get("stage")
        if etype in stage_types:
            if isinstance(stage, str) and stage != self.stage:
                if self.stage:
                    self.stage_changes += 1
                self.stage = stage
                self.stage_ms = ts_ms
        else:
            self.activities += 1
        self.prev_touch_ms = self.last_touch_ms
        self.last_touch_ms = max(self.last_touch_ms, ts_ms)

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)


def _put(x: dict[str, float], name: str, v: float, log1p: frozenset[str]) -> None:
    x[name] = math.log1p(v) if name in log1p and v > 0 else (0.0 if name in log1p else v)


def profile_vector(
    m: ModelDef, values: Mapping[str, float], as_of_ms: int, first_seen: str | None
) -> dict[str, float]:
    """The inputs of a profile model.

    >>> from scoring.modeldefs import LabelDef, ModelDef
    >>> m = ModelDef("churn", "profile", (), ("orders_30d", "revenue_30d"), ("profile_age_days",),
    ...              frozenset({"revenue_30d"}), (), LabelDef("inactivity"))
    >>> v = profile_vector(m, {"orders_30d": 2.0, "first_seen": 0.0}, 2 * 86_400_000, "first_seen")
    >>> v
    {'orders_30d': 2.0, 'profile_age_days': 2.0}
    >>> from types import MappingProxyType  # any mapping, read the same way
    >>> ro = MappingProxyType({"orders_30d": 2.0, "first_seen": 0.0})
    >>> profile_vector(m, ro, 2 * 86_400_000, "first_seen") == v
    True
    """
    x: dict[str, float] = {}
    got: dict[str, float] = values if isinstance(values, dict) else dict(values)  # (a dict's get is direct)
    for name, log in m.feature_logs:
        v = got.get(name)
        if v is not None:
            x[name] = (math.log1p(v) if v > 0 else 0.0) if log else v
    if "profile_age_days" in m.extras and first_seen is not None:
        fs = got.get(first_seen)
        if fs is not None:
            _put(x, "profile_age_days", max(0.0, (as_of_ms / 1000.0 - fs) / 86_400.0), m.log1p)
    return x


def opportunity_vector(
    m: ModelDef,
    opp: Opportunity,
    values: Mapping[str, float],
    as_of_ms: int,
    first_seen: str | None,
) -> dict[str, float]:
    """The inputs of an opportunity model: profile features and the opportunity's own."""
    x = profile_vector(m, values, as_of_ms, first_seen)
    log1p = m.log1p
    extras = m.extras
    own = {
        "opp_amount_log": math.log10(max(opp.amount, 1.0)),
        "opp_age_days": max(0.0, (as_of_ms - opp.created_ms) / DAY_MS),
        "opp_stage_days": max(0.0, (as_of_ms - opp.stage_ms) / DAY_MS),
        "opp_stage_index": float(m.stages.index(opp.stage)) if opp.stage in m.stages else -1.0,
        "opp_activities": float(opp.activities),
        "opp_days_since_touch": max(0.0, (as_of_ms - opp.prev_touch_ms) / DAY_MS),
        "opp_stage_changes": float(opp.stage_changes),
    }
    for name, v in own.items():
        if name in extras:
            _put(x, name, v, log1p)
    return x
