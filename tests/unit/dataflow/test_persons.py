"""What the identity graph is asked for each event: its keyed identifier hashes under the
graph's names, and its profileId only when the event named one."""

from __future__ import annotations

import orjson

from flows.core.contract import Limits, RawRecord, Validator
from flows.core.pii import PiiProtector
from flows.dataflow.persons import identifiers_of
from sinks.identity_graph import Identifier

V = Validator(Limits(), PiiProtector(b"k", ("phone",)))
NOW = 1_790_000_000_000


def parse(doc: dict):
    return V.parse(RawRecord(orjson.dumps({"eventId": "e", "type": "x", "ts": NOW, **doc}), "t"), NOW)


def test_a_named_profile_id_is_an_identifier_a_derived_one_is_not() -> None:
    named = parse({"profileId": "crm-1", "identifiers": {"openId": "o1"}})
    derived = parse({"identifiers": {"openId": "o1"}})
    assert derived.profile_id.startswith("id:openId:")
    assert identifiers_of(named) == [
        Identifier("openId", named.pii_hashes["openId"]),
        Identifier("profileId", "crm-1"),
    ]
    assert identifiers_of(derived) == [Identifier("openId", derived.pii_hashes["openId"])]


def test_phones_and_emails_go_under_their_kind_and_pii_props_are_not_identifiers() -> None:
    e = parse(
        {"identifiers": {"mobile": "13800000001", "workEmail": "A@x.cn"}, "props": {"phone": "13900000002"}}
    )
    assert "props.phone" in e.pii_hashes
    assert sorted(i.name for i in identifiers_of(e)) == ["email", "phone"]
    same = parse({"identifiers": {"phone": "+86 138 0000 0001"}})
    assert identifiers_of(same) == [i for i in identifiers_of(e) if i.name == "phone"]
