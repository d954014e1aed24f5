"""Messaging: ``message_sent`` on a channel the profile is subscribed to, then
``message_opened`` -> ``message_clicked`` -> ``message_replied`` (each step may stop the
flow); right after a send the profile may instead complain or unsubscribe from the channel.

Engagement drives opening, clicking and replying; churn propensity drives complaints and
unsubscribes.
"""

from __future__ import annotations

import random

from flows.synthetic.envelope import EventWriter
from flows.synthetic.profile import Profile
from flows.synthetic.vocabulary import MESSAGE_TEMPLATES

__all__ = ["Messaging"]


class Messaging:
    """The message flows of every profile (one open flow per profile)."""

    __slots__ = ("_out", "_rnd")

    def __init__(self, rng: random.Random, out: EventWriter) -> None:
        self._rnd = rng.random
        self._out = out

    def message_sent(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        channel = p.subscribed[int(rnd() * len(p.subscribed))]
        p.msg_channel = channel
        p.msg_template = MESSAGE_TEMPLATES[int(rnd() * len(MESSAGE_TEMPLATES))]
        p.msg_stage = 1
        return self._out.emit(
            p, ts, "message_sent", channel, {"channel": channel, "template": p.msg_template}
        )

    def message_step(self, p: Profile, ts: int) -> bytes | None:
        """The open flow's next event, or None when the flow stops here."""
        rnd = self._rnd
        t = p.traits
        channel = p.msg_channel
        stage = p.msg_stage
        p.msg_stage = 0
        r = rnd()
        etype = ""
        if stage == 1:
            if r < 0.01 + 0.04 * t.churn_propensity:
                etype = "complaint"
            elif r < 0.02 + 0.10 * t.churn_propensity:
                etype = "unsubscribe"
                p.subscribed.remove(channel)
            elif r < 0.25 + 0.5 * t.engagement:
                etype = "message_opened"
                p.msg_stage = 2
        elif stage == 2:
            if r < 0.2 + 0.4 * t.engagement:
                etype = "message_clicked"
                p.msg_stage = 3
        elif r < (0.25 if channel == "wecom" else 0.08) + 0.2 * t.engagement:
            etype = "message_replied"
        if not etype:
            return None
        return self._out.emit(p, ts, etype, channel, {"channel": channel, "template": p.msg_template})
