"""What crosses processes: messages as plain tuples, rebuilt the same on the other side."""

from __future__ import annotations

import pickle
import pickletools
from typing import Any

import pytest

from flows.core import contract, messages
from flows.core.wire import TYPES, from_wire, to_wire
from flows.dataflow.wakes import WAKE


def _sample(cls: Any) -> Any:
    """An instance with a distinct value in each field (NamedTuples do not check types)."""
    return cls(*(f"{name}-value" for name in cls._fields))


def _named_tuples(module: Any) -> set[type]:
    return {
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, tuple)
        and hasattr(v, "_fields")
        and v.__module__ == module.__name__
    }


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_a_message_crosses_as_a_plain_tuple_and_comes_back_the_same(cls: Any) -> None:
    item = _sample(cls)
    sent = pickle.dumps(to_wire(item))
    # no class is named in what is sent: unpickling it resolves nothing
    assert not [op for op, _, _ in pickletools.genops(sent) if op.name in {"GLOBAL", "STACK_GLOBAL", "INST"}]
    back = from_wire(pickle.loads(sent))
    assert type(back) is cls
    assert back == item


def test_every_message_type_has_a_wire_code() -> None:
    assert _named_tuples(messages) | {contract.Event, contract.DeadLetter} <= set(TYPES)


def test_what_is_not_a_message_passes_as_it_is() -> None:
    assert to_wire(WAKE) is WAKE
    assert from_wire(WAKE) is WAKE
    for plain in [(0, "x"), (), ("a", 1)]:  # never read as a message
        assert from_wire(pickle.loads(pickle.dumps(to_wire(plain)))) == plain
    event = _sample(contract.Event)
    assert from_wire(event) is event  # a step fed messages directly (tests, one process)
