"""PII: stable keyed hashes, readable masks, nothing in clear."""

from __future__ import annotations

import pickle

from flows.core.identifiers import IdentifierRules
from flows.core.pii import PiiProtector, mask_value


def test_hash_is_stable_and_keyed():
    a, b = PiiProtector(b"one", ()), PiiProtector(b"two", ())
    assert a.digest("phone", "13800000001") == a.digest("phone", "+138 0000 0001".replace("+", ""))
    assert a.digest("phone", "13800000001") != b.digest("phone", "13800000001")
    assert a.digest("email", "Z@X.com") == a.digest("email", " z@x.com ")
    assert len(a.digest("openId", "o123")) == 32


def test_masks():
    assert mask_value("phone", "13800000001") == "138****0001"
    assert mask_value("email", "zhang@example.com") == "z***@example.com"
    assert mask_value("openId", "oABCDEFGHIJK") == "oA****JK"
    assert mask_value("deviceId", "short") == "****"


def test_protect_does_not_mutate_its_input_and_pickles():
    p = PiiProtector(b"k", ("email",))
    props = {"email": "a@b.cn", "n": 1}
    _, hashes, out, invalid = p.protect({}, props)
    assert props == {"email": "a@b.cn", "n": 1}
    assert out["email"] == "a***@b.cn" and "props.email" in hashes and invalid == []
    clone = pickle.loads(pickle.dumps(p))
    assert clone.digest("x", "y") == p.digest("x", "y")


def test_a_pii_prop_hashes_like_the_identifier_it_names():
    p = PiiProtector(b"k", ("phone",))
    _, hashes, _, _ = p.protect({"phone": "+86 138 0000 0001"}, {"phone": "13800000001"})
    assert hashes["phone"] == hashes["props.phone"]
    # a props value without a canonical form is still hashed, as trimmed text
    assert p.digest("phone", " 12345 ") == p.digest("phone", "12345")


def test_phones_and_emails_join_whatever_their_names_and_ids_never_cross():
    p = PiiProtector(b"k", ("mobile",))
    _, hashes, _, _ = p.protect(
        {"phone": "13800000001", "homePhone": "+86 138 0000 0001", "workEmail": "A@x.cn", "email": "a@x.cn"},
        {"mobile": "138-0000-0001"},
    )
    assert hashes["phone"] == hashes["homePhone"] == hashes["props.mobile"]
    assert hashes["email"] == hashes["workEmail"]
    assert p.digest("openId", "o-1") != p.digest("unionId", "o-1")


def test_the_default_region_decides_what_a_national_number_is():
    cn, us = PiiProtector(b"k", ()), PiiProtector(b"k", (), IdentifierRules("US"))
    assert cn.digest("phone", "+16502530000") == us.digest("phone", "(650) 253-0000")
    assert pickle.loads(pickle.dumps(us)).digest("phone", "6502530000") == us.digest("phone", "+16502530000")
