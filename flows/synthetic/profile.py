"""One simulated customer: its traits, identifiers, churn state and the state of each of
its flows (session and cart, order, message, ticket, opportunity)."""

from __future__ import annotations

from flows.synthetic.traits import Traits
from flows.synthetic.vocabulary import MESSAGE_CHANNELS

__all__ = ["Profile"]


class Profile:
    """One simulated customer: its traits, identifiers and the state of its flows."""

    __slots__ = (
        "cart",
        "churn_after",
        "churned",
        "events",
        "identifiers",
        "in_table",
        "index",
        "last_paid_amount",
        "last_paid_id",
        "msg_channel",
        "msg_stage",
        "msg_template",
        "opp_activities",
        "opp_amount",
        "opp_id",
        "opp_owner",
        "opp_stage",
        "opp_won",
        "order_amount",
        "order_id",
        "order_source",
        "order_stage",
        "profile_id",
        "session_id",
        "session_left",
        "session_source",
        "silent",
        "silent_since",
        "silent_until",
        "subscribed",
        "ticket_id",
        "traits",
        "weight",
    )

    def __init__(self, index: int, traits: Traits, churn_after: int) -> None:
        self.index = index
        self.profile_id = f"p{index:06d}"
        self.traits = traits
        self.weight = 0.02 + traits.engagement
        self.churn_after = churn_after  # goes silent right after this many events; -1: never
        self.churned = False  # went silent at least once
        self.silent = False
        self.silent_since = -1  # caller time of the last event before the silence
        self.silent_until = -1
        self.in_table = False  # has an entry in the roster's weight table
        self.events = 0
        self.identifiers: dict[str, str] | None = None  # set at signup
        self.subscribed = list(MESSAGE_CHANNELS)
        self.session_id = ""
        self.session_source = ""
        self.session_left = 0
        self.cart: list[tuple[str, float, int]] = []
        self.order_stage = 0  # 0 none, 1 checkout started, 2 order created (unpaid)
        self.order_id = ""
        self.order_amount = 0.0
        self.order_source = ""
        self.last_paid_id = ""
        self.last_paid_amount = 0.0
        self.msg_channel = ""
        self.msg_template = ""
        self.msg_stage = 0  # 0 none, 1 sent, 2 opened, 3 clicked
        self.ticket_id = ""
        self.opp_id = ""
        self.opp_stage = 0
        self.opp_amount = 0.0
        self.opp_owner = ""
        self.opp_activities = 0
        self.opp_won = False  # decided at creation (see traits.win_probability)

    @property
    def is_churner(self) -> bool:
        """True if the churn rule made this profile a churner (see ``churn_probability``)."""
        return self.churn_after >= 0
