"""Sales: an opportunity is created at stage ``lead`` with an amount and an owner, moves
lead -> qualified -> proposal -> negotiation between sales activities (``call_logged``,
``meeting_held``, ``email_sent_by_rep``), and closes exactly once, won or lost.

Whether it will be won is drawn at creation (``traits.win_probability``); a deal that will
be won has more activities on the way (``ACTIVITY_IF_WON`` vs ``ACTIVITY_IF_LOST``).
"""

from __future__ import annotations

import random
from typing import Any

from flows.synthetic.envelope import EventWriter
from flows.synthetic.profile import Profile
from flows.synthetic.traits import ACTIVITY_IF_LOST, ACTIVITY_IF_WON, win_probability
from flows.synthetic.vocabulary import OPPORTUNITY_STAGES, SALES_ACTIVITIES

__all__ = ["Sales"]

_OWNERS = 40  # sales reps u000 .. u039


class Sales:
    """The opportunities of every profile (one open at a time per profile); numbers them."""

    __slots__ = ("_opps", "_out", "_rng")

    def __init__(self, rng: random.Random, out: EventWriter) -> None:
        self._rng = rng
        self._out = out
        self._opps = 0

    def opportunity_created(self, p: Profile, ts: int) -> bytes:
        rng = self._rng
        self._opps += 1
        p.opp_id = f"op{self._opps:08d}"
        p.opp_stage = 0
        p.opp_activities = 0
        p.opp_amount = round(rng.lognormvariate(8.6 + 1.2 * p.traits.value, 0.6), 2)
        p.opp_won = rng.random() < win_probability(p.traits.value, p.opp_amount)
        p.opp_owner = f"u{int(rng.random() * _OWNERS):03d}"
        return self._out.emit(
            p,
            ts,
            "opportunity_created",
            "crm",
            {
                "opportunityId": p.opp_id,
                "stage": OPPORTUNITY_STAGES[0],
                "amount": p.opp_amount,
                "currency": "CNY",
                "ownerId": p.opp_owner,
            },
        )

    def opportunity_step(self, p: Profile, ts: int) -> bytes:
        """The open opportunity's next event: an activity, a stage change or its close."""
        rnd = self._rng.random
        props: dict[str, Any] = {"opportunityId": p.opp_id, "ownerId": p.opp_owner}
        r = rnd()
        if r < (ACTIVITY_IF_WON if p.opp_won else ACTIVITY_IF_LOST):
            p.opp_activities += 1
            etype = SALES_ACTIVITIES[int(rnd() * 3)]
            source = "callcenter" if etype == "call_logged" else "crm"
            if etype != "email_sent_by_rep":
                props["durationSec"] = 60 + int(rnd() * 3540)
        elif p.opp_stage < 3:
            props["fromStage"] = OPPORTUNITY_STAGES[p.opp_stage]
            p.opp_stage += 1
            props["stage"] = OPPORTUNITY_STAGES[p.opp_stage]
            props["amount"] = p.opp_amount
            props["currency"] = "CNY"
            etype = "opportunity_stage_changed"
            source = "crm"
        else:
            won = p.opp_won
            etype = "opportunity_won" if won else "opportunity_lost"
            source = "crm"
            props["stage"] = "won" if won else "lost"
            props["amount"] = p.opp_amount
            props["currency"] = "CNY"
            p.opp_id = ""
        return self._out.emit(p, ts, etype, source, props)
