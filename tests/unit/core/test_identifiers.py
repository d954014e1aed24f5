"""Identifier normalisation: one canonical form per person's phone or email, a reason for
every refusal."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.identifiers import REASONS, IdentifierRules, default_region_error, kind_of

CN = IdentifierRules("CN")


@pytest.mark.parametrize(
    "written",
    ["13800000001", "138 0000 0001", "138-0000-0001", "+8613800000001", "+86 138 0000 0001",
     "0086 138 0000 0001", " (+86) 13800000001 "],
)  # fmt: skip
def test_every_way_of_writing_a_chinese_mobile_gives_one_e164(written):
    assert CN.canonical("phone", written) == ("+8613800000001", "")


def test_the_default_region_reads_national_numbers_and_leaves_international_ones():
    us = IdentifierRules("US")
    assert us.canonical("phone", "(650) 253-0000") == ("+16502530000", "")
    assert CN.canonical("phone", "+1 650 253 0000") == ("+16502530000", "")
    assert CN.canonical("phone", "650 253 0000")[1] == "invalid_number"  # not a CN number


@pytest.mark.parametrize(
    ("value", "reason"),
    [("", "empty"), ("   ", "empty"), ("12345", "invalid_number"), ("call me", "unparseable"),
     ("1" * 80, "too_long")],
)  # fmt: skip
def test_a_refused_phone_says_why(value, reason):
    assert CN.canonical("mobile", value) == ("", reason)


def test_emails_are_trimmed_and_lower_cased_and_checked():
    assert CN.canonical("email", " Zhang.San@Example.COM ") == ("zhang.san@example.com", "")
    for bad in ("no-at-sign", "@example.com", "a@b", "a@@b.com", "a b@c.com", "a@.com", "a@com."):
        assert CN.canonical("email", bad) == ("", "malformed"), bad
    assert CN.canonical("workEmail", "x" * 250 + "@a.com") == ("", "too_long")


def test_other_ids_are_trimmed_only():
    assert CN.canonical("openId", "  oAbC-1 ") == ("oAbC-1", "")
    assert CN.canonical("unionId", 12345) == ("12345", "")
    assert CN.canonical("deviceId", "\t") == ("", "empty")
    assert CN.canonical("deviceId", "d" * 257) == ("", "too_long")


def test_kinds_come_from_names():
    names = (
        "phone",
        "mobilePhone",
        "phoneNumber",
        "Email",
        "workEmail",
        "openId",
        "mobileDeviceId",
        "emailOptIn",
    )
    assert [kind_of(n) for n in names] == ["phone", "phone", "phone", "email", "email", "id", "id", "id"]


def test_a_region_is_checked_and_the_rules_pickle():
    assert default_region_error("GB") == ""
    assert "XX" in default_region_error("XX")
    assert pickle.loads(pickle.dumps(IdentifierRules("GB"))).region == "GB"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["phone", "email", "openId"]))
def test_any_input_is_canonical_or_refused_with_a_reason_and_canonical_is_a_fixed_point(text, name):
    out, why = CN.canonical(name, text)
    assert (out == "") == (why != "")
    assert why == "" or why in REASONS
    if out:
        assert CN.canonical(name, out) == (out, "")  # normalising twice changes nothing
