"""Noise on purpose: malformed outputs of every kind the engine must dead-letter, and the
size of the ring that duplicates are re-sent from."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson

from flows.synthetic.envelope import EventWriter
from flows.synthetic.profile import Profile
from flows.synthetic.vocabulary import PAGES

__all__ = ["RING_SIZE", "YEAR_2300_MS", "malformed"]

RING_SIZE = 1000  # a duplicate re-sends one of this many last valid outputs
YEAR_2300_MS = 10_413_792_000_000  # 2300-01-01T00:00:00Z


def malformed(rng: random.Random, out: EventWriter, profiles: Sequence[Profile], now_ms: int) -> bytes:
    """A broken output built from a detached ``page_view`` of a random profile (no
    profile's state moves): truncated JSON, a JSON array, no ``eventId``, no ``ts``,
    ``props`` a string, a ``type`` with spaces or upper case, a ``ts`` in the year 2300, or
    an empty ``profileId`` without identifiers, each equally likely."""
    rnd = rng.random
    p = profiles[int(rnd() * len(profiles))]
    base: dict[str, Any] = {
        "eventId": out.event_id(),
        "profileId": p.profile_id,
        "type": "page_view",
        "ts": now_ms,
        "source": "web",
        "props": {"page": PAGES[int(rnd() * len(PAGES))]},
    }
    kind = int(rnd() * 8)
    if kind == 0:  # truncated JSON: a proper prefix of an object never parses
        raw = orjson.dumps(base)
        return raw[: 1 + int(rnd() * (len(raw) - 1))]
    if kind == 1:
        return orjson.dumps([base])
    if kind == 2:
        del base["eventId"]
    elif kind == 3:
        del base["ts"]
    elif kind == 4:
        base["props"] = f"page={base['props']['page']};currency=CNY"
    elif kind == 5:
        base["type"] = ("Page View", "PAGE_VIEW", "add to cart", "Order Paid")[int(rnd() * 4)]
    elif kind == 6:
        base["ts"] = YEAR_2300_MS + int(rnd() * 365 * 86_400_000)
    else:
        base["profileId"] = ""
    return orjson.dumps(base)
