"""Identifiers in one canonical form, so a person's phone or email hashes the same however
a channel wrote it.

An identifier's kind comes from its name, in any case: a name ending in ``phone`` or
``mobile`` (``homePhone``), or ``phoneNumber``, ``mobileNumber``, ``tel``, is a phone; one
ending in ``email`` (``workEmail``), or ``emailAddress``, an email; any other name
(openId, unionId, deviceId, mobileDeviceId, emailOptIn, ...) an opaque id.

- **phone**: E.164 (``+8613800000001``) by libphonenumber; a number without a country
  code is read in the configured default region. Refused when it does not parse or is
  not a valid number of its region.
- **email**: trimmed and lower-cased. Refused unless it is one ``@`` between a local part
  and a dotted domain, without spaces, within 254 characters.
- **id**: trimmed. Refused when empty or longer than 256 characters.

>>> rules = IdentifierRules("CN")
>>> rules.canonical("phone", "138 0000 0001"), rules.canonical("mobile", "+86 138-0000-0001")
(('+8613800000001', ''), ('+8613800000001', ''))
>>> rules.canonical("email", " Zhang.San@Example.COM "), rules.canonical("phone", "12345")
(('zhang.san@example.com', ''), ('', 'invalid_number'))
>>> rules.canonical("openId", "  o-123 "), rules.canonical("deviceId", " ")
(('o-123', ''), ('', 'empty'))
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

PHONE, EMAIL, ID = "phone", "email", "id"
# Identifier names, most trusted first: a profile id is derived from the first an event
# carries (`flows.core.pii.profile_from_hashes`), and the identity graph leaves out the
# last when a link would over-merge. WeChat's ids are issued per account; a phone or an
# email is typed by the customer; a device may be shared.
PRIORITY = ("unionId", "openId", "phone", "email", "deviceId")
PROFILE_ID = "profileId"  # the CRM's own id, as the identity graph names it
# The most identifiers of each name one person may hold (the identity graph's guard against
# over-merging): one CRM id, unionId and phone; a few emails; an openId per WeChat account
# (service account, mini-program, ...); a few devices.
LIMITS = {PROFILE_ID: 1, "unionId": 1, "phone": 1, "email": 3, "openId": 10, "deviceId": 5}
# Why an identifier was refused (the `reason` label of scrm_identifiers_invalid_total).
REASONS = ("empty", "too_long", "unparseable", "invalid_number", "malformed")
EMAIL_MAX = 254  # RFC 5321's path limit
ID_MAX = 256


PHONE_NAMES = frozenset({"phonenumber", "mobilenumber", "tel"})
EMAIL_NAMES = frozenset({"emailaddress"})


@lru_cache(maxsize=1024)
def graph_name(name: str) -> str:
    """The name the identity graph files identifier `name` under: its kind for a phone or an
    email (they hash under their kind, so ``mobile`` and ``phone`` are one), else itself."""
    kind = kind_of(name)
    return name if kind == ID else kind


@lru_cache(maxsize=1024)
def kind_of(name: str) -> str:
    """The kind of the identifier called `name`: phone, email or id. The name's last word
    decides, so ``mobileDeviceId`` stays an id."""
    lname = name.lower()
    if lname.endswith(("phone", "mobile")) or lname in PHONE_NAMES:
        return PHONE
    if lname.endswith("email") or lname in EMAIL_NAMES:
        return EMAIL
    return ID


def default_region_error(region: str) -> str:
    """Why `region` cannot be the default phone region ('' when it can)."""
    if region in phonenumbers.SUPPORTED_REGIONS:
        return ""
    return f"{region!r} is not an ISO 3166 region code libphonenumber knows (for example CN, US, GB)"


class IdentifierRules:
    """Canonical forms of identifiers, phones read in `region` when they carry no country
    code; pure and picklable."""

    __slots__ = ("region",)

    def __init__(self, region: str = "CN") -> None:
        self.region = region

    def __getstate__(self) -> str:
        return self.region

    def __setstate__(self, state: str) -> None:
        self.region = state

    def canonical(self, name: str, value: object) -> tuple[str, str]:
        """(canonical form, "") or ("", why it is refused)."""
        return _canonical(kind_of(name), str(value), self.region)


@lru_cache(maxsize=65536)
def _canonical(kind: str, text: str, region: str) -> tuple[str, str]:
    # Cached: a person's identifiers repeat, and parsing a phone takes ~30 µs.
    text = text.strip()
    if not text:
        return "", "empty"
    if kind == PHONE:
        if len(text) > 64:
            return "", "too_long"
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return "", "unparseable"
        if not phonenumbers.is_valid_number(number):
            return "", "invalid_number"
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""
    if kind == EMAIL:
        if len(text) > EMAIL_MAX:
            return "", "too_long"
        local, at, domain = text.lower().partition("@")
        dotted = "." in domain.strip(".")
        if not at or not local or "@" in domain or not dotted or any(c.isspace() for c in text):
            return "", "malformed"
        return f"{local}@{domain}", ""
    if len(text) > ID_MAX:
        return "", "too_long"
    return text, ""
