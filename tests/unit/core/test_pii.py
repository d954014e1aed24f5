"""PII: stable keyed hashes, readable masks, nothing in clear."""

from __future__ import annotations

import pickle

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
    _, hashes, out = p.protect({}, props)
    assert props == {"email": "a@b.cn", "n": 1}
    assert out["email"] == "a***@b.cn" and "props.email" in hashes
    clone = pickle.loads(pickle.dumps(p))
    assert clone.digest("x", "y") == p.digest("x", "y")
