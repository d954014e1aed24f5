"""Items that may cross to another process travel as plain tuples.

Bytewax pickles every item an exchange sends to a worker of another process, one item at
a time. A NamedTuple's pickle names its class and is rebuilt through it, which costs
several times a plain tuple's: across two processes, 300,000 parsed events went through a
keyed step in 4.8 - 5.6 s as `Event`s and in 1.1 - 1.2 s as plain tuples
(docs/design.md, "Across processes"). So the keyed steps are fed through
`flows.core.batches.Keyed`, each value `to_wire(item)`, the item's fields behind its type
code, and take `from_wire(item)`.
Within a process nothing is pickled, and the pair costs ~0.5 µs an item.
"""

from __future__ import annotations

from typing import Any

from flows.core.contract import DeadLetter, Event
from flows.core.messages import (
    ActionRecord,
    Activity,
    FeatureUpdate,
    IdentityChange,
    Intent,
    ModelMetric,
    ModelVersion,
    Observation,
    Outcome,
    Score,
)

# every process of a cluster runs the same code, so a type's place here is its code
TYPES: tuple[Any, ...] = (
    Event,
    DeadLetter,
    FeatureUpdate,
    Score,
    Observation,
    Activity,
    Outcome,
    ModelMetric,
    ModelVersion,
    Intent,
    ActionRecord,
    IdentityChange,
)
_CODES = {t: i for i, t in enumerate(TYPES)}
_PLAIN = -1  # a plain tuple of another kind, wrapped so that it is not read as a message


def to_wire(item: Any) -> Any:
    """`item` as a plain tuple ``(code, *fields)``; an item of another type as it is."""
    code = _CODES.get(type(item))
    if code is not None:
        return (code, *item)
    return (_PLAIN, item) if type(item) is tuple else item


def from_wire(item: Any) -> Any:
    """The item `to_wire` made `item` from. Its callers are fed only by `to_wire`: a plain
    tuple that did not come from it would be read as one that did."""
    if type(item) is not tuple:
        return item
    code = item[0]
    # tuple.__new__ rather than the class's `_make`: no Python-level call, and to_wire
    # made the fields, so their number is right
    return item[1] if code == _PLAIN else tuple.__new__(TYPES[code], item[1:])
