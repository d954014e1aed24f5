"""The hidden traits of a synthetic customer and the propensity rules that tie them to
behaviour (the scoring relies on these rules; the generator obeys them).

Latent traits (drawn once per profile from the seeded rng, kept in ``Profile.traits``)
-------------------------------------------------------------------------------------
``engagement`` ~ Beta(2, 5), ``value`` ~ Beta(2, 3), ``churn_propensity`` ~ Beta(2, 4),
``timezone`` (mostly ``Asia/Shanghai``) and ``birthday`` (``"MM-DD"``); the last two are
reported in the ``signup`` props and do not change behaviour.

* Who acts: the next profile is drawn with weight ``0.02 + engagement`` among the profiles
  that are not silent.
* ``value`` drives what is bought (pricier SKUs), checkout conversion, payment, opportunity
  creation and amounts.

Churn
-----
``churn_probability(traits) = sigmoid(10 (churn_propensity - 0.6) - 3 (engagement - 0.5))``.
At creation each profile draws ``u ~ U(0, 1)``; it is a churner iff
``u < churn_probability(traits)``. A churner also draws ``churn_after = 5 + floor(45 u')``
(``u' ~ U(0, 1)``): right after emitting its ``churn_after``-th event (signup included) it
goes silent and produces no event at all for ``CHURN_SILENCE_MS`` (180 days) of caller
time; after that it is won back and never churns again. Only if every profile is silent at
once is the one whose silence ends first woken early, so the stream never stalls (with
realistic profile counts this does not happen). Non-churners never go silent.

Win
---
An opportunity's fate is sealed when it is created: it will be won iff
``u < win_probability(value, amount)`` with ``u ~ U(0, 1)`` drawn at creation and
``amount`` its ``opportunity_created`` amount::

    win_probability = sigmoid(-0.3 + 3 (value - 0.5) - 0.9 log10(amount / 10000))

and the buyer behaves accordingly: each step of an open opportunity is a sales activity
(``call_logged`` / ``meeting_held`` / ``email_sent_by_rep``) with probability
``ACTIVITY_IF_WON`` = 0.7 for a deal that will be won and ``ACTIVITY_IF_LOST`` = 0.3 for one
that will be lost, otherwise the next stage change; after ``negotiation`` a non-activity step
closes it (``opportunity_won`` / ``opportunity_lost``). So a deal's outcome shows in its
activity as it goes: the log-odds of a win given ``a`` activities after ``s`` stage steps
move by ``a ln(7/3) + s ln(3/7)`` from the prior at creation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from flows.synthetic.vocabulary import TIMEZONES

__all__ = [
    "ACTIVITY_IF_LOST",
    "ACTIVITY_IF_WON",
    "CHURN_SILENCE_MS",
    "Traits",
    "churn_probability",
    "draw_churn_after",
    "draw_traits",
    "win_probability",
]

CHURN_SILENCE_MS = 180 * 86_400_000
ACTIVITY_IF_WON = 0.7
ACTIVITY_IF_LOST = 0.3

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True, slots=True)
class Traits:
    """The hidden, fixed traits of one profile (see the module docstring)."""

    engagement: float
    value: float
    churn_propensity: float
    timezone: str
    birthday: str  # "MM-DD"


def _sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def churn_probability(traits: Traits) -> float:
    """Probability that a profile is a churner (goes silent after ``churn_after`` events).

    ``sigmoid(10 (churn_propensity - 0.6) - 3 (engagement - 0.5))``: rising with the churn
    propensity, falling with engagement.

    >>> round(churn_probability(Traits(0.5, 0.5, 0.6, "Asia/Shanghai", "01-01")), 3)
    0.5
    """
    return _sigmoid(10.0 * (traits.churn_propensity - 0.6) - 3.0 * (traits.engagement - 0.5))


def win_probability(value: float, amount: float) -> float:
    """Probability, drawn against at creation, that an opportunity will be won.

    ``sigmoid(-0.3 + 3 (value - 0.5) - 0.9 log10(amount / 10000))``: valuable customers win
    more often, big deals less often.

    >>> round(win_probability(0.5, 10_000.0), 3), round(win_probability(0.9, 5_000.0), 3)
    (0.426, 0.763)
    """
    return _sigmoid(-0.3 + 3.0 * (value - 0.5) - 0.9 * math.log10(max(amount, 1.0) / 10_000.0))


def draw_traits(rng: random.Random) -> Traits:
    """One profile's traits: the Beta draws, then the timezone, then the birthday."""
    engagement = rng.betavariate(2.0, 5.0)
    value = rng.betavariate(2.0, 3.0)
    churn_propensity = rng.betavariate(2.0, 4.0)
    x = rng.random()
    timezone = TIMEZONES[-1][0]
    for name, w in TIMEZONES:
        if x < w:
            timezone = name
            break
        x -= w
    day = rng.randrange(365)
    month = 0
    while day >= _DAYS_IN_MONTH[month]:
        day -= _DAYS_IN_MONTH[month]
        month += 1
    return Traits(
        engagement=engagement,
        value=value,
        churn_propensity=churn_propensity,
        timezone=timezone,
        birthday=f"{month + 1:02d}-{day + 1:02d}",
    )


def draw_churn_after(rng: random.Random, traits: Traits) -> int:
    """After how many events a profile goes silent, -1 for a non-churner (see Churn above).

    Both draws are made either way, so the stream after them does not depend on the outcome.
    """
    churns = rng.random() < churn_probability(traits)
    churn_after = 5 + int(rng.random() * 45)
    return churn_after if churns else -1
