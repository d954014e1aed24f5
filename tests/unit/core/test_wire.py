"""What crosses processes: messages as plain tuples, rebuilt the same on the other side;
and the per-batch steps that key them and split them out."""

from __future__ import annotations

import pickle
import pickletools
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, NamedTuple

import pytest

from flows.core import contract, messages
from flows.core.batches import Flat, Keyed, person_of
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


def test_a_batch_is_keyed_and_sent_as_the_wire_form_and_a_key_that_is_not_a_string_is_refused() -> None:
    events = [_sample(contract.Event), _sample(contract.Event)._replace(profile_id="p2", person_id="")]
    keyed = Keyed(lambda e: e.profile_id, wire=True)(events)
    assert [k for k, _ in keyed] == ["profile_id-value", "p2"]
    assert [from_wire(pickle.loads(pickle.dumps(v))) for _, v in keyed] == events
    # the profile step's input: by person, else by profile
    assert [k for k, _ in Keyed(person_of, wire=True)(events)] == ["person_id-value", "p2"]
    assert Keyed(lambda e: e.profile_id)(events) == [("profile_id-value", events[0]), ("p2", events[1])]
    with pytest.raises(TypeError, match="str"):  # compiled, the annotation checks it first
        Keyed(lambda e: 1)(events)


def test_a_batch_of_lists_comes_out_as_their_items_in_order_with_or_without_keys() -> None:
    class Two(NamedTuple):
        a: Sequence[int]
        b: Sequence[int]

    batch = [Two([1, 2], ()), Two((), [3]), Two([4], [5, 6])]
    assert Flat(attrgetter("a"))(batch) == [1, 2, 4]
    assert Flat(attrgetter("b"), keyed=True)([(str(i), x) for i, x in enumerate(batch)]) == [3, 5, 6]
