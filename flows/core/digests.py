"""Stable 64-bit digests: what per-profile state keeps instead of the strings it has seen.

A digest is 8 bytes in a flat array where a string is 50 bytes or more plus a slot in a
set or dict. It is the same in every process (unlike `hash`), so it survives a snapshot.
Two different strings share one with odds of about n²/2⁶⁵ among n held together: 3 in
10¹² at 10,000.

Two functions, each kept by the state that holds its digests: `id64` (XXH3, ~60 ns) for
the eventIds every event brings to the dedupe memory, and `key64` (BLAKE2b, ~300 ns) for
the values of `distinct` buckets, which snapshots have held since before `id64`.
"""

from __future__ import annotations

from hashlib import blake2b

from xxhash import xxh3_64_intdigest


def key64(text: str) -> int:
    """The signed 64-bit digest of `text` (fits an ``array('q')``).

    >>> key64("a") == key64("a"), key64("a") == key64("b"), -2**63 <= key64("a") < 2**63
    (True, False, True)
    """
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def id64(text: str) -> int:
    """The signed 64-bit XXH3 digest of `text`'s UTF-8 bytes (fits an ``array('q')``).

    >>> id64("a") == id64("a"), id64("a") == id64("b"), -2**63 <= id64("a") < 2**63
    (True, False, True)
    """
    v = xxh3_64_intdigest(text)
    return v - (1 << 64) if v >> 63 else v
