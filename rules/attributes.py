"""A profile's record: the attributes its ``identify`` and ``profile_updated`` events
carry (name, gender, birthday, timezone, region, tier, owner, custom fields), readable
by journey conditions (``attribute``), send variables (``{{profile.<name>}}``) and, for
``timezone``, quiet hours and waits.

Every prop of such an event is an attribute, except ``consent`` (a consent record, see
`rules.runtime`). Per attribute the value of the newest event time wins (at the same
time, the later in stream order), so a late, older update changes nothing; ``null``
clears it. Values are scalars or lists of scalars; an object is not kept. A PII prop
(one of ``pii.props_fields``) arrives masked: it is kept as `PII`, which no condition
matches and which a send variable leaves as its placeholder, for the sender (which
holds the contact data) to fill. State is bounded: at most `MAX_ATTRS` attributes per
profile, text cut at `MAX_TEXT` characters.

>>> from flows.core.contract import Event
>>> props = {"tier": "gold", "name": "张*"}
>>> e = Event("e1", "p1", "identify", 1000, "", props, {}, {"props.name": "h"}, 0, "", 0, 0)
>>> attrs = learn(None, e)
>>> value_of(attrs, "tier"), value_of(attrs, "name") == PII, value_of(attrs, "region")
('gold', True, None)
>>> older = Event("e0", "p1", "profile_updated", 900, "", {"tier": "silver"}, {}, {}, 0, "", 0, 0)
>>> value_of(learn(attrs, older), "tier")
'gold'
"""

from __future__ import annotations

from typing import Any

from flows.core.contract import Event

PROFILE_TYPES = frozenset({"identify", "profile_updated"})
NOT_ATTRIBUTES = frozenset({"consent"})
PII = "\x00pii"  # a masked PII prop: known to exist, never read in the engine
MAX_ATTRS = 64
MAX_TEXT = 256

# attribute -> (value, event time ms of the update that set it)
Attributes = dict[str, tuple[Any, int]]


def _kept(v: Any) -> tuple[bool, Any]:
    if v is None or isinstance(v, bool | int | float):
        return True, v
    if isinstance(v, str):
        return True, v[:MAX_TEXT]
    if isinstance(v, list):
        items = [x[:MAX_TEXT] if isinstance(x, str) else x for x in v[:MAX_ATTRS]]
        return all(x is None or isinstance(x, str | bool | int | float) for x in items), items
    return False, None


def learn(attrs: Attributes | None, e: Event) -> Attributes | None:
    """`attrs` with the attributes of profile event `e` applied (None: no attributes)."""
    got = attrs if attrs is not None else {}
    hashed = e.pii_hashes
    for k, v in (e.props or {}).items():
        if k in NOT_ATTRIBUTES:
            continue
        prev = got.get(k)
        if prev is not None and prev[1] > e.ts_ms:
            continue  # a newer update already set it
        if prev is None and len(got) >= MAX_ATTRS:
            continue
        ok, value = (True, PII) if f"props.{k}" in hashed else _kept(v)
        if ok:
            got[k] = (value, e.ts_ms)
    return got or None


def value_of(attrs: Attributes | None, name: str) -> Any:
    """The attribute's value (None: unknown or cleared; `PII`: masked)."""
    if not attrs:
        return None
    got = attrs.get(name)
    return None if got is None else got[0]
