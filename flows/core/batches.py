"""Bytewax's per-item steps as one compiled call per batch.

`op.map`, `op.flat_map`, `op.key_on` and `op.key_rm` are each `op.flat_map_batch` with an
interpreted generator that calls the step's function once per item. Every event passes
through several of them (keyed for the profile step, then split out of its `ProfileOut`
into a stream per kind), so the dataflow uses these callables with `op.flat_map_batch`
instead: the same items out, one call per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.core.wire import to_wire


class Keyed:
    """``(key(item), item)`` for each item (`op.key_on`); with `wire`, the value as
    `to_wire` sends it, for a keyed step that may exchange it between processes (its logic
    takes it back with `flows.core.wire.from_wire`)."""

    def __init__(self, key: Callable[[Any], str], wire: bool = False) -> None:
        self._key = key
        self._wire = wire

    def __call__(self, batch: list[Any]) -> list[tuple[str, Any]]:
        key = self._key
        out: list[tuple[str, Any]] = []
        if self._wire:
            for x in batch:
                out.append((_str_key(key(x)), to_wire(x)))
        else:
            for x in batch:
                out.append((_str_key(key(x)), x))
        return out


def person_of(event: Any) -> str:
    """The profile step's key: an event's person, its profile where it has none."""
    return str(event.person_id or event.profile_id)


class Flat:
    """`get(item)` (a list) of each item, concatenated: `op.flat_map`. For a keyed stream
    (`keyed`), of each item's value, its key dropped: `op.key_rm` too."""

    def __init__(self, get: Callable[[Any], Any], keyed: bool = False) -> None:
        self._get = get
        self._keyed = keyed

    def __call__(self, batch: list[Any]) -> list[Any]:
        get = self._get
        out: list[Any] = []
        if self._keyed:
            for kv in batch:
                part = get(kv[1])
                if part:
                    out.extend(part)
        else:
            for x in batch:
                part = get(x)
                if part:
                    out.extend(part)
        return out


def _str_key(k: object) -> str:
    if not isinstance(k, str):
        raise TypeError(f"a key must be a str; got a {type(k)!r}")
    return k
