"""Customer service: a ticket opened at the call center or on WeCom (about the last paid
order when there is one), later closed."""

from __future__ import annotations

import random
from typing import Any

from flows.synthetic.envelope import EventWriter
from flows.synthetic.profile import Profile
from flows.synthetic.vocabulary import TICKET_CATEGORIES

__all__ = ["Service"]


class Service:
    """The service events of every profile; numbers tickets."""

    __slots__ = ("_out", "_rnd", "_tickets")

    def __init__(self, rng: random.Random, out: EventWriter) -> None:
        self._rnd = rng.random
        self._out = out
        self._tickets = 0

    def ticket_opened(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        self._tickets += 1
        p.ticket_id = f"t{self._tickets:08d}"
        props: dict[str, Any] = {
            "ticketId": p.ticket_id,
            "category": TICKET_CATEGORIES[int(rnd() * len(TICKET_CATEGORIES))],
        }
        if p.last_paid_id:
            props["orderId"] = p.last_paid_id
        return self._out.emit(p, ts, "ticket_opened", "callcenter" if rnd() < 0.6 else "wecom", props)

    def ticket_closed(self, p: Profile, ts: int) -> bytes:
        tid = p.ticket_id
        p.ticket_id = ""
        return self._out.emit(
            p,
            ts,
            "ticket_closed",
            "callcenter",
            {"ticketId": tid, "resolution": "solved" if self._rnd() < 0.85 else "no_response"},
        )
