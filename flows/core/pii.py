"""PII never reaches storage in clear: a keyed hash (HMAC-SHA256) to join on, a mask to read.

`identifiers` (phone, email, openId, unionId, deviceId, ...) and the props fields listed
as PII in settings are replaced by a masked display form (``138****0001``,
``z***@example.com``); their keyed hashes go beside them so analysts can still join and
count distinct people without seeing who they are. The same secret gives the same hash
in every process and every run; rotating the secret breaks joins with older rows.

>>> p = PiiProtector(b"secret", ("phone",))
>>> masked, hashes, props = p.protect({"phone": "13800000001"}, {"phone": "13900000002", "sku": "A1"})
>>> masked, props
({'phone': '138****0001'}, {'phone': '139****0002', 'sku': 'A1'})
>>> sorted(hashes)
['phone', 'props.phone']
>>> mask_value("email", "zhang.san@example.com")
'z***@example.com'
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Any

# Which identifier names the engine derives a profile from when an event has no
# profileId, in order of preference (most stable first).
IDENTITY_PRIORITY = ("unionId", "openId", "phone", "email", "deviceId")
_HASH_HEX = 32  # 128 bits of the HMAC: plenty to join on, half the storage


def normalize(name: str, value: object) -> str:
    """The form that is hashed: trimmed; emails lower-cased; phones digits only (and '+')."""
    text = str(value).strip()
    lname = name.lower()
    if "email" in lname:
        return text.lower()
    if "phone" in lname or "mobile" in lname:
        return "".join(ch for ch in text if ch.isdigit() or ch == "+")
    return text


def mask_value(name: str, value: object) -> str:
    """A display form that keeps enough to recognise, not enough to contact."""
    text = str(value).strip()
    lname = name.lower()
    if "email" in lname and "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    if ("phone" in lname or "mobile" in lname) and len(text) >= 7:
        return f"{text[:3]}****{text[-4:]}"
    if len(text) > 8:
        return f"{text[:2]}****{text[-2:]}"
    return "****"


@lru_cache(maxsize=65536)
def _digest(secret: bytes, name: str, value: object) -> str:
    """HMAC-SHA256 of ``name:normalized value``; cached, as a person's identifiers repeat."""
    msg = f"{name.lower()}:{normalize(name, value)}".encode()
    return hmac.digest(secret, msg, "sha256").hex()[:_HASH_HEX]


class PiiProtector:
    """Hashes and masks identifiers and PII props with one secret; pure and picklable."""

    __slots__ = ("_props_fields", "_secret")

    def __init__(self, secret: bytes, props_fields: tuple[str, ...] | list[str]) -> None:
        self._secret = bytes(secret)
        self._props_fields = tuple(props_fields)

    @property
    def props_fields(self) -> tuple[str, ...]:
        return self._props_fields

    def __getstate__(self) -> tuple[bytes, tuple[str, ...]]:
        return self._secret, self._props_fields

    def __setstate__(self, state: tuple[bytes, tuple[str, ...]]) -> None:
        self._secret, self._props_fields = state

    def digest(self, name: str, value: object) -> str:
        return _digest(self._secret, name, value)

    def protect(
        self, identifiers: dict[str, Any], props: dict[str, Any]
    ) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        """Return (masked identifiers, hashes, props with PII fields masked)."""
        masked: dict[str, str] = {}
        hashes: dict[str, str] = {}
        for name, value in identifiers.items():
            masked[name] = mask_value(name, value)
            hashes[name] = self.digest(name, value)
        pii_props = [f for f in self._props_fields if f in props]
        if pii_props:
            props = dict(props)
            for f in pii_props:
                value = props[f]
                if value is None or isinstance(value, dict | list):
                    continue
                hashes[f"props.{f}"] = self.digest(f, value)
                props[f] = mask_value(f, value)
        return masked, hashes, props

    def profile_from_identifiers(self, identifiers: dict[str, Any]) -> str:
        """A stable profile id for an event that names a person only by identifiers."""
        for name in IDENTITY_PRIORITY:
            if identifiers.get(name) not in (None, ""):
                return f"id:{name}:{self.digest(name, identifiers[name])[:20]}"
        name = sorted(identifiers)[0]
        return f"id:{name}:{self.digest(name, identifiers[name])[:20]}"
