"""FeaturePlan: declaration fingerprints, which a restored profile's states are matched by."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import flows
from flows.features.declarations import parse_features
from flows.features.plan import FeaturePlan

DECL = {
    "feature": [
        {"name": "orders_1d", "agg": "count", "types": ["order_paid"], "window": "1d"},
        {"name": "touches_7d", "agg": "count", "types": ["call_logged", "meeting_held", "email_sent_by_rep"],
         "window": "7d", "buckets": 7},
        {"name": "app_pos_revenue_1d", "agg": "sum", "types": ["order_paid"], "value": "props.amount",
         "where": [["props.channel", "in", ["app", "pos", "kiosk", "web"]]], "window": "1d"},
    ]
}  # fmt: skip

ROOT = str(Path(flows.__file__).resolve().parent.parent)  # where `flows` is imported from
PRINT_FINGERPRINTS = (
    "from flows.features.declarations import parse_features\n"
    "from flows.features.plan import FeaturePlan\n"
    f"print(FeaturePlan(parse_features({DECL!r})).fingerprints)\n"
)


def test_fingerprints_are_the_same_in_every_process():
    """Sets (types, `in` values) iterate in an order that follows the hash seed; a
    restarted process must still recognise an unchanged declaration."""
    seen = set()
    for seed in ("0", "1", "2", "3", "4", "5"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": ROOT}
        out = subprocess.run(
            [sys.executable, "-c", PRINT_FINGERPRINTS], env=env, capture_output=True, text=True, check=True
        )
        seen.add(out.stdout)
    assert len(seen) == 1, seen
    assert str(FeaturePlan(parse_features(DECL)).fingerprints) == seen.pop().strip()


def test_a_changed_declaration_changes_its_fingerprint_only():
    before = FeaturePlan(parse_features(DECL)).fingerprints
    changed = {"feature": [dict(f) for f in DECL["feature"]]}
    changed["feature"][2]["where"] = [["props.channel", "in", ["app", "pos"]]]
    after = FeaturePlan(parse_features(changed)).fingerprints
    assert after[:2] == before[:2] and after[2] != before[2]


HELD_DECL = {
    "feature": [
        {"name": "orders_1d", "agg": "count", "types": ["order_paid"], "window": "1d"},
        {"name": "skus_1d", "agg": "distinct", "value": "props.sku", "window": "1d"},
        {"name": "revenue_1d", "agg": "sum", "value": "props.amount", "window": "1d"},
        {"name": "per_order", "agg": "expr", "expr": "revenue_1d / orders_1d"},
        {"name": "skus_7d", "agg": "distinct", "value": "props.sku", "window": "7d", "buckets": 7},
        {"name": "seen", "agg": "recency"},
    ]
}  # fmt: skip


def test_held_lists_the_features_with_state_in_order_and_where_their_objects_are():
    plan = FeaturePlan(parse_features(HELD_DECL))
    n = len(plan.names)
    for bits in range(1 << n):
        got = plan.held(bits)
        with_state = [i for i in range(n) if bits >> i & 1 and plan.kernels[i] is not None]
        assert [h[0] for h in got] == with_state
        objects = [i for i in with_state if plan.kernels[i].fresh is None]
        for i, bit, name, _, j in got:
            assert (bit, name) == (1 << i, plan.names[i])
            assert j == (objects.index(i) if i in objects else -1)
        assert plan.held(bits) is got  # one shared tuple per set


def test_held_sets_cache_stays_bounded():
    plan = FeaturePlan(parse_features({"feature": [
        {"name": f"c{i}", "agg": "count", "window": "1d"} for i in range(20)
    ]}))  # fmt: skip
    for bits in range(70_000):
        plan.held(bits)
    assert len(plan._held) <= 65_536
    assert [h[0] for h in plan.held(69_999)] == [i for i in range(20) if 69_999 >> i & 1]


def test_a_read_computes_the_exprs_asked_and_what_they_read_through_exprs_of_exprs():
    plan = FeaturePlan(parse_features({"feature": [
        {"name": "a", "agg": "count", "window": "1d"},
        {"name": "b", "agg": "count", "window": "7d"},
        {"name": "c", "agg": "count", "window": "30d"},
        {"name": "ab", "agg": "expr", "expr": "a / b"},
        {"name": "ab_c", "agg": "expr", "expr": "ab - c"},
        {"name": "other", "agg": "expr", "expr": "c * 2"},
    ]}))  # fmt: skip
    a, b, c, ab, ab_c, other = (plan.bits([n]) for n in plan.names)
    assert plan.read_bits(a | c) == a | c  # no expr asked: nothing more
    assert plan.read_bits(ab) == ab | a | b  # not `other` nor `c`
    assert plan.read_bits(ab_c) == ab_c | ab | a | b | c
    assert plan.read_bits(other | a) == other | c | a
