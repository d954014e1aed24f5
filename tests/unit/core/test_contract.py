"""The event contract: every input is accepted or dead-lettered with the right reason."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.contract import DeadLetter, Event, Limits, RawRecord, Validator, parse_ts
from flows.core.pii import PiiProtector

NOW = 1_800_000_000_000  # 2027-01-15, the clock passed in
V = Validator(Limits(max_event_bytes=2048, dead_letter_raw_bytes=100), PiiProtector(b"k", ("phone",)))


def parse(obj: object, raw: bytes | None = None):
    value = raw if raw is not None else orjson.dumps(obj)
    return V.parse(RawRecord(value, "test", 3, 42, b"key", NOW - 5), NOW)


def good(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "eventId": "e-1",
        "profileId": "p-1",
        "type": "order_paid",
        "ts": NOW - 1000,
        "source": "app",
        "props": {"amount": 99.5},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_good_event_is_accepted_with_its_provenance():
    ev = parse(good())
    assert isinstance(ev, Event)
    assert (ev.event_id, ev.profile_id, ev.type, ev.ts_ms, ev.source) == (
        "e-1",
        "p-1",
        "order_paid",
        NOW - 1000,
        "app",
    )
    assert ev.props == {"amount": 99.5}
    assert (ev.origin, ev.partition, ev.offset, ev.received_ms) == ("test", 3, 42, NOW - 5)


@pytest.mark.parametrize(
    ("obj", "raw", "reason"),
    [
        (None, b"{not json", "invalid_json"),
        (None, b"\xff\xfe", "invalid_json"),
        (None, b"", "invalid_json"),
        ([1, 2], None, "not_object"),
        ("text", None, "not_object"),
        (good(eventId=...), None, "missing_field:eventId"),
        (good(eventId=""), None, "missing_field:eventId"),
        (good(eventId=7), None, "bad_type:eventId"),
        (good(eventId="x" * 129), None, "bad_value:eventId"),
        (good(type=...), None, "missing_field:type"),
        (good(type="Page View"), None, "bad_value:type"),
        (good(type="x" * 65), None, "bad_value:type"),
        (good(ts=...), None, "missing_field:ts"),
        (good(ts=None), None, "missing_field:ts"),
        (good(ts=True), None, "bad_type:ts"),
        (good(ts="yesterday"), None, "bad_value:ts"),
        (good(ts=[1]), None, "bad_type:ts"),
        (good(ts=10_413_792_000), None, "ts_out_of_range"),  # year 2300 in seconds
        (good(ts=NOW + 2 * 86_400_000), None, "ts_out_of_range"),
        (good(ts=1), None, "ts_out_of_range"),
        (good(ts=float("1e300")), None, "ts_out_of_range"),
        (good(props="amount=5"), None, "bad_type:props"),
        (good(props=[1]), None, "bad_type:props"),
        (good(source=5), None, "bad_type:source"),
        (good(identifiers="13800000000"), None, "bad_type:identifiers"),
        (good(identifiers={"phone": {"n": 1}}), None, "bad_type:identifiers"),
        (good(profileId=...), None, "missing_field:profileId"),
        (good(profileId=""), None, "missing_field:profileId"),
        (good(profileId=12), None, "bad_type:profileId"),
    ],
)
def test_bad_input_is_dead_lettered_with_reason(obj, raw, reason):
    dl = parse(obj, raw)
    assert isinstance(dl, DeadLetter), dl
    assert dl.reason == reason
    assert dl.detail
    assert (dl.origin, dl.partition, dl.offset, dl.key) == ("test", 3, 42, b"key")


def test_too_large_keeps_a_bounded_prefix_of_the_raw_bytes():
    raw = orjson.dumps(good(props={"blob": "x" * 5000}))
    dl = parse(None, raw)
    assert isinstance(dl, DeadLetter)
    assert dl.reason == "too_large"
    assert dl.raw == raw[:100]
    assert dl.raw_size == len(raw)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1_700_000_000, 1_700_000_000_000),
        (1_700_000_000.25, 1_700_000_000_250),
        (1_700_000_000_123, 1_700_000_000_123),
        ("1700000000", 1_700_000_000_000),
        ("1700000000123", 1_700_000_000_123),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20.5+00:00", 1_700_000_000_500),
        ("2023-11-15T06:13:20+08:00", 1_700_000_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000_000),  # naive ISO is read as UTC
    ],
)
def test_ts_accepts_epoch_seconds_milliseconds_and_iso(ts, expected):
    assert parse_ts(ts) == expected


def test_missing_profile_is_derived_from_identifiers_without_leaking_them():
    ev = parse(good(profileId=..., identifiers={"phone": "13800000001", "email": "Zhang@Example.com"}))
    assert isinstance(ev, Event)
    assert ev.profile_id.startswith("id:phone:")
    assert ev.identifiers == {"phone": "138****0001", "email": "Z***@Example.com"}
    assert "13800000001" not in repr(ev)
    again = parse(good(eventId="e-2", profileId=..., identifiers={"phone": "138 0000 0001"}))
    assert again.profile_id == ev.profile_id  # normalised before hashing
    e164 = parse(good(eventId="e-3", profileId=..., identifiers={"phone": "+86 138-0000-0001"}))
    assert e164.profile_id == ev.profile_id and e164.pii_hashes["phone"] == ev.pii_hashes["phone"]


def test_an_invalid_identifier_is_masked_not_hashed_and_counted():
    V.invalid_identifiers.clear()
    ev = parse(good(profileId=..., identifiers={"phone": "12345", "email": "Z@Example.com"}))
    assert isinstance(ev, Event)
    assert ev.profile_id.startswith("id:email:")  # the valid one identifies the event
    assert ev.identifiers == {"phone": "****", "email": "Z***@Example.com"}
    assert set(ev.pii_hashes) == {"email"}  # the refused phone joins nothing
    assert V.invalid_identifiers == {("phone", "invalid_number"): 1}
    kept = parse(good(identifiers={"deviceId": "  "}))  # a profileId identifies it
    assert isinstance(kept, Event) and kept.pii_hashes == {}
    assert V.invalid_identifiers == {("phone", "invalid_number"): 1, ("id", "empty"): 1}


def test_an_event_identified_only_by_invalid_identifiers_is_dead_lettered_with_why():
    dl = parse(good(profileId=..., identifiers={"phone": "12345", "email": "nobody"}))
    assert isinstance(dl, DeadLetter) and dl.reason == "invalid_identifiers"
    assert "identifiers.phone: invalid_number" in dl.detail and "identifiers.email: malformed" in dl.detail


def test_pii_props_are_masked_and_hashed():
    ev = parse(good(props={"phone": "13900000002", "sku": "A"}))
    assert ev.props == {"phone": "139****0002", "sku": "A"}
    assert set(ev.pii_hashes) == {"props.phone"}


# --- properties -----------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw):
    out = parse(None, raw)
    assert isinstance(out, Event | DeadLetter)
    if isinstance(out, DeadLetter):
        assert out.reason and len(out.raw) <= 100


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
contract_keys = st.sampled_from(["eventId", "profileId", "type", "ts", "source", "props", "identifiers"])


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        contract_keys | st.text(max_size=6),
        json_values | st.integers(1_600_000_000, 1_800_000_000),
        max_size=8,
    )
)
def test_every_object_is_accepted_or_dead_lettered_and_accepted_ones_meet_the_contract(obj):
    out = parse(obj)
    assert isinstance(out, Event | DeadLetter)
    if isinstance(out, Event):
        if "eventId" in obj or "type" in obj:
            assert 0 < len(out.event_id) <= 128 and out.event_id == obj["eventId"]
        else:  # a profile document: one profile_updated event, its id a digest of it
            assert out.type == "profile_updated" and out.event_id.startswith("profile:")
        assert 0 < len(out.profile_id) <= 128
        assert V.limits.min_ts_ms <= out.ts_ms <= NOW + V.limits.max_future_ms
        assert isinstance(out.props, dict)
    else:
        assert out.reason.split(":")[0] in {
            "invalid_json",
            "not_object",
            "missing_field",
            "bad_type",
            "bad_value",
            "ts_out_of_range",
            "too_large",
            "invalid_identifiers",
        }


def test_a_profile_document_is_accepted_as_one_profile_updated_event() -> None:
    v = Validator(Limits(), PiiProtector(b"k", ("name",)))
    doc = {"name": "张三", "identifiers": {"phone": "13800000001"}, "tags": ["vip"], "segments": ["b2b"],
           "consent": {"time": "2026-01-02T03:04:05Z", "ver": "v1"}}  # fmt: skip
    raw = orjson.dumps(doc)
    e = v.parse(RawRecord(raw, "t", received_ms=1_790_000_000_000), now_ms=1_790_000_000_000)
    assert e.type == "profile_updated" and e.event_id.startswith("profile:")
    assert e.ts_ms == 1_767_323_045_000 and e.profile_id.startswith("id:phone:")
    assert e.props["name"] != "张三" and "props.name" in e.pii_hashes  # PII masked as any prop
    assert e.props["tags"] == ["vip"] and e.props["consent"]["ver"] == "v1"
    again = v.parse(RawRecord(raw, "t", received_ms=1_790_000_000_999), now_ms=1_790_000_000_999)
    assert again.event_id == e.event_id  # the same document twice: one event
