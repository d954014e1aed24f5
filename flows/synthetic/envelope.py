"""The envelope of every generated event: its id, profile, type, time, source and props,
sometimes the identifiers its source knows, encoded as JSON bytes with orjson."""

from __future__ import annotations

import random
from typing import Any

import orjson

from flows.synthetic.identity import IDENTIFIER_SHARE, identifiers_seen_by
from flows.synthetic.profile import Profile

__all__ = ["EventWriter"]

_M64 = (1 << 64) - 1
_ODD64 = 0x9E3779B97F4A7C15  # odd, so multiplying by it permutes the integers mod 2**64


class EventWriter:
    """Numbers and encodes the events of one generator.

    Event ids are ``(counter * odd constant mod 2**64) xor id_key`` in 16 hex digits: a
    bijection of the counter, so ids never repeat within a generator.
    """

    __slots__ = ("_eid", "_id_key", "_rnd")

    def __init__(self, rng: random.Random, id_key: int) -> None:
        self._rnd = rng.random
        self._id_key = id_key
        self._eid = 0  # events numbered so far

    def event_id(self) -> str:
        self._eid += 1
        return (((self._eid * _ODD64) & _M64) ^ self._id_key).to_bytes(8, "big").hex()

    def emit(self, p: Profile, ts: int, etype: str, source: str, props: dict[str, Any]) -> bytes:
        """One event of ``p``; with probability ``IDENTIFIER_SHARE`` it carries identifiers."""
        self._eid = eid = self._eid + 1
        ev: dict[str, Any] = {
            # == event_id(), inlined: this is the hot path
            "eventId": (((eid * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) ^ self._id_key)
            .to_bytes(8, "big")
            .hex(),
            "profileId": p.profile_id,
            "type": etype,
            "ts": ts,
            "source": source,
            "props": props,
        }
        if self._rnd() < IDENTIFIER_SHARE:
            ids = p.identifiers
            assert ids is not None  # every profile signs up first
            ev["identifiers"] = identifiers_seen_by(source, ids)
        return orjson.dumps(ev)
