"""PII never reaches storage in clear: a keyed hash (HMAC-SHA256) to join on, a mask to read.

`identifiers` (phone, email, openId, unionId, deviceId, ...) and the props fields listed
as PII in settings are replaced by a masked display form (``138****0001``,
``z***@example.com``); their keyed hashes go beside them so analysts can still join and
count distinct people without seeing who they are. The same secret gives the same hash
in every process and every run; rotating the secret breaks joins with older rows.

What is hashed is the identifier's canonical form (`flows.core.identifiers`: phones in
E.164, emails lower-cased), so ``138 0000 0001`` and ``+86 138-0000-0001`` hash alike.
An identifier that has no canonical form is masked but not hashed, and reported back
with the reason; a PII props field without one is hashed as trimmed text.

>>> p = PiiProtector(b"secret", ("phone",))
>>> masked, hashes, props, invalid = p.protect(
...     {"phone": "13800000001", "email": "no-at-sign"}, {"phone": "13900000002", "sku": "A1"})
>>> masked, props, invalid
({'phone': '138****0001', 'email': 'n***'}, {'phone': '139****0002', 'sku': 'A1'}, [('email', 'malformed')])
>>> sorted(hashes)
['phone', 'props.phone']
>>> hashes["phone"] == p.digest("phone", "+86 138 0000 0001")
True
>>> mask_value("email", "zhang.san@example.com")
'z***@example.com'
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Any

from flows.core.identifiers import EMAIL, ID, PHONE, PRIORITY, IdentifierRules, kind_of

_HASH_HEX = 32  # 128 bits of the HMAC: plenty to join on, half the storage


def mask_value(name: str, value: object) -> str:
    """A display form that keeps enough to recognise, not enough to contact."""
    text = str(value).strip()
    kind = kind_of(name)
    if kind == EMAIL:
        local, at, domain = text.partition("@")
        return f"{local[:1]}***@{domain}" if at else f"{local[:1]}***"
    if kind == PHONE and len(text) >= 7:
        return f"{text[:3]}****{text[-4:]}"
    if len(text) > 8:
        return f"{text[:2]}****{text[-2:]}"
    return "****"


@lru_cache(maxsize=65536)
def _digest(secret: bytes, name: str, text: str) -> str:
    """HMAC-SHA256 of ``<scope>:text``, the scope a phone's or email's kind and any other
    id's name (so ``mobile`` and ``phone`` join, ``openId`` and ``unionId`` never do);
    cached, as a person's identifiers repeat."""
    kind = kind_of(name)
    scope = kind if kind != ID else name.lower()
    return hmac.digest(secret, f"{scope}:{text}".encode(), "sha256").hex()[:_HASH_HEX]


class PiiProtector:
    """Hashes and masks identifiers and PII props with one secret; pure and picklable."""

    __slots__ = ("_props_fields", "_rules", "_secret")

    def __init__(
        self, secret: bytes, props_fields: tuple[str, ...] | list[str], rules: IdentifierRules | None = None
    ) -> None:
        self._secret = bytes(secret)
        self._props_fields = tuple(props_fields)
        self._rules = rules or IdentifierRules()

    @property
    def props_fields(self) -> tuple[str, ...]:
        return self._props_fields

    def __getstate__(self) -> tuple[bytes, tuple[str, ...], str]:
        return self._secret, self._props_fields, self._rules.region

    def __setstate__(self, state: tuple[bytes, tuple[str, ...], str]) -> None:
        self._secret, self._props_fields, region = state
        self._rules = IdentifierRules(region)

    def digest(self, name: str, value: object) -> str:
        """The keyed hash of `value` in its canonical form (trimmed text if it has none)."""
        text, why = self._rules.canonical(name, value)
        return _digest(self._secret, name, str(value).strip() if why else text)

    def protect(
        self, identifiers: dict[str, Any], props: dict[str, Any]
    ) -> tuple[dict[str, str], dict[str, str], dict[str, Any], list[tuple[str, str]]]:
        """Return (masked identifiers, hashes, props with PII fields masked, the
        identifiers refused as (name, reason): masked, not hashed)."""
        masked: dict[str, str] = {}
        hashes: dict[str, str] = {}
        invalid: list[tuple[str, str]] = []
        canonical = self._rules.canonical
        for name, value in identifiers.items():
            masked[name] = mask_value(name, value)
            text, why = canonical(name, value)
            if why:
                invalid.append((name, why))
            else:
                hashes[name] = _digest(self._secret, name, text)
        pii_props = [f for f in self._props_fields if f in props]
        if pii_props:
            props = dict(props)
            for f in pii_props:
                value = props[f]
                if value is None or isinstance(value, dict | list):
                    continue
                hashes[f"props.{f}"] = self.digest(f, value)
                props[f] = mask_value(f, value)
        return masked, hashes, props, invalid


def profile_from_hashes(identifiers: dict[str, Any], hashes: dict[str, str]) -> str:
    """A stable profile id for an event that names a person only by identifiers: from the
    hash of the most stable one that has a canonical form ('' when none has)."""
    for name in PRIORITY:
        h = hashes.get(name)
        if h is not None:
            return f"id:{name}:{h[:20]}"
    names = sorted(n for n in identifiers if n in hashes)
    return f"id:{names[0]}:{hashes[names[0]][:20]}" if names else ""
