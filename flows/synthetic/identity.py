"""A profile's identifiers: all five drawn at signup, and the one a source knows, which
rides on about ``IDENTIFIER_SHARE`` of the other events."""

from __future__ import annotations

import random

from flows.synthetic.vocabulary import EMAIL_DOMAINS, PHONE_PREFIXES

__all__ = ["IDENTIFIER_SHARE", "draw_identifiers", "identifiers_seen_by"]

IDENTIFIER_SHARE = 0.03


def draw_identifiers(rng: random.Random, index: int, phone_key: int) -> dict[str, str]:
    """phone, email, openId, unionId and deviceId of profile ``index``.

    The phone is ``(index * 7919 + phone_key) mod 10**8`` behind a prefix: distinct for
    every profile; the others are random draws.
    """
    return {
        "phone": f"{PHONE_PREFIXES[index % len(PHONE_PREFIXES)]}{(index * 7919 + phone_key) % 10**8:08d}",
        "email": f"user{index}.{rng.getrandbits(16):04x}@{rng.choice(EMAIL_DOMAINS)}",
        "openId": f"o{rng.getrandbits(108):027x}",
        "unionId": f"u{rng.getrandbits(108):027x}",
        "deviceId": f"{rng.getrandbits(128):032x}",
    }


def identifiers_seen_by(source: str, ids: dict[str, str]) -> dict[str, str]:
    """The identifiers an event from ``source`` carries: the device on app and web, the
    WeChat ids on miniprogram and wecom, the email on email, the phone elsewhere.

    >>> identifiers_seen_by("email", {"email": "a@b.c", "phone": "13000000000"})
    {'email': 'a@b.c'}
    """
    if source == "app" or source == "web":
        return {"deviceId": ids["deviceId"]}
    if source == "miniprogram" or source == "wecom":
        return {"openId": ids["openId"], "unionId": ids["unionId"]}
    if source == "email":
        return {"email": ids["email"]}
    return {"phone": ids["phone"]}
