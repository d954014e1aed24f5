"""The Redis stores' wire commands: what redis-py itself would send, numbers formatted together."""

from __future__ import annotations

import math

import hiredis
from hypothesis import given
from hypothesis import strategies as st

from sinks.redis_hashes import HashWrite, _pack

TTL_MS = 60_000

numbers = st.dictionaries(
    st.sampled_from(("a", "b", "as_of")),
    st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**62), 2**62),
)
writes = st.builds(
    HashWrite,
    st.sampled_from(("scrm:features:{p1}", "scrm:score:{p2}")),
    numbers,
    st.dictionaries(st.sampled_from(("tags", "segment")), st.text(max_size=8)),
    st.lists(st.sampled_from(("x", "y")), unique=True).map(tuple),
    st.booleans(),
)


def one_by_one(w: HashWrite) -> list[bytes]:
    """Each command packed alone, numbers as redis-py writes them (``repr``)."""
    fields = [x for k, v in w.fields.items() for x in (k, v if isinstance(v, str) else repr(v))]
    out = [hiredis.pack_command(("HSET", w.key, *fields))]
    if w.removed:
        out.append(hiredis.pack_command(("HDEL", w.key, *w.removed)))
    if w.expire:
        out.append(hiredis.pack_command(("PEXPIRE", w.key, TTL_MS)))
    return out


def decoded(packed: list[bytes]) -> list[list[bytes]]:
    """The arguments of each command (a command is a RESP array, read as a reply would be)."""
    reader = hiredis.Reader()
    for cmd in packed:
        reader.feed(cmd)
    return [reader.gets() for _ in packed]


def same_value(a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    try:  # shortest round trip either way: "1e-07" and "1e-7" are one number
        x, y = float(a), float(b)
    except ValueError:
        return False
    return x == y or (math.isnan(x) and math.isnan(y))


@given(st.lists(writes, max_size=5))
def test_a_flush_packs_what_each_write_packed_alone_would(ws):
    got = decoded(_pack(ws, TTL_MS))
    want = decoded([c for w in ws for c in one_by_one(w)])
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        assert all(same_value(a, b) for a, b in zip(g, w, strict=True)), (g, w)


def test_numbers_are_written_as_redis_py_writes_them():
    (cmd,) = _pack([HashWrite("k", {"n": 3, "x": 129.5, "y": 0.1 + 0.2}, expire=False)], TTL_MS)
    assert cmd == hiredis.pack_command(("HSET", "k", "n", "3", "x", "129.5", "y", "0.30000000000000004"))
