"""Per-profile features against an independent oracle that recomputes them from raw events.

The oracle below is written from the semantics in the docstring of ``flows/featuredefs.py``
only (not from ``flows/features.py``): it keeps every event, decides lateness in arrival
order, then recomputes each feature with plain loops. Hypothesis streams for one profile
(out of order within and beyond the allowed lateness, odd property values) must give the
same feature map after every ``add`` and while the profile then stays silent.

Details the docstring leaves open, and what the oracle assumes for them:

* numbers are ``int``/``float`` but not ``bool``; a numeric *string* ("150") is not a number,
  neither for a ``value`` nor for a ``>``/``>=``/``<``/``<=`` condition (which then fails);
  ``in`` holds when the field is present and among the listed values (a list or object
  value never is); ``==``/``!=`` never hold for a missing field;
* ``distinct`` compares numbers by ``float()`` (5 == 5.0) and strings as strings ("5" != 5);
  a missing value is not a value. Booleans, lists and objects as distinct values are left
  out of the generated data: the docstring does not say whether True and 1 are one value,
  nor whether a list is a value at all;
* ``last`` looks at matching events *with a numeric value* (one without is skipped, like
  for sum); ties in ts go to the later arrival;
* ``decayed_sum`` weighs 1 per event when the feature has no ``value`` field, and skips
  events without a numeric value when it has one;
* ``first_seen`` is ``ts_ms / 1000`` (epoch seconds, fractional) and ``recency`` is
  ``(T - ts) / unit``;
* ``count``/``sum``/``distinct``/``decayed_sum``/``trend`` are never absent (0 when empty).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import math
import pickle
import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.core.contract import Event
from flows.features.declarations import FeatureDef, FeatureSet, parse_features
from flows.features.plan import FeaturePlan
from flows.features.windows import ProfileFeatures

M = 60_000
H = 3_600_000
D = 86_400_000
LATENESS = H
BASE_TS = 1_700_000_000_000

# --------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------

_MISSING = object()


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _read(ev: Event, path: str) -> Any:
    """The field `path` of `ev`, or _MISSING."""
    top = {"type": ev.type, "source": ev.source, "profileId": ev.profile_id, "eventId": ev.event_id}
    if path in top:
        return top[path]
    node: Any = ev.props
    for key in path.split(".")[1:]:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return _MISSING if node is None else node


def _condition_holds(ev: Event, field: str, op: str, want: Any) -> bool:
    have = _read(ev, field)
    if have is _MISSING:
        return False
    if op == "in":
        try:
            return have in want
        except TypeError:  # a list or object is not one of the listed values
            return False
    if op == "==":
        return have == want
    if op == "!=":
        return have != want
    if not _is_number(have):
        return False
    if op == ">":
        return have > want
    if op == ">=":
        return have >= want
    if op == "<":
        return have < want
    if op == "<=":
        return have <= want
    raise AssertionError(f"unknown op {op}")


def _matches(fd: FeatureDef, ev: Event) -> bool:
    if fd.types and ev.type not in fd.types:
        return False
    return all(_condition_holds(ev, c.field, c.op, c.value) for c in fd.where)


def _numeric_value(fd: FeatureDef, ev: Event) -> float | None:
    v = _read(ev, fd.value) if fd.value else _MISSING
    return v if _is_number(v) else None


def _distinct_key(v: Any) -> Any:
    if _is_number(v):
        return ("number", float(v))
    if isinstance(v, str):
        return ("string", v)
    return ("other", repr(v))


def oracle_lateness(events: list[Event], lateness_ms: int) -> list[bool]:
    """For each event in arrival order: True when accepted, False when late."""
    out = []
    newest = None
    for ev in events:
        if newest is not None and newest - ev.ts_ms > lateness_ms:
            out.append(False)
        else:
            out.append(True)
            newest = ev.ts_ms if newest is None else max(newest, ev.ts_ms)
    return out


def _in_window(fd: FeatureDef, ts: int, as_of: int, windows_back: int = 0) -> bool:
    if not fd.window_ms:  # window = "lifetime"
        return True
    w = fd.window_ms // fd.buckets
    last_bucket = as_of // w - windows_back * fd.buckets
    return last_bucket - fd.buckets < ts // w <= last_bucket


def _eval_expr(node: ast.AST, vals: dict[str, float]) -> float | None:
    if isinstance(node, ast.Expression):
        return _eval_expr(node.body, vals)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return vals.get(node.id)
    if isinstance(node, ast.UnaryOp):
        x = _eval_expr(node.operand, vals)
        if x is None:
            return None
        return -x if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.BinOp):
        a = _eval_expr(node.left, vals)
        b = _eval_expr(node.right, vals)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            return None if b == 0 else a / b
    raise AssertionError(f"unexpected expr node {ast.dump(node)}")


def _window_values(fd: FeatureDef, events: list[Event], as_of: int, back: int = 0) -> list[float]:
    out = []
    for ev in events:
        if _in_window(fd, ev.ts_ms, as_of, back):
            v = _numeric_value(fd, ev)
            if v is not None:
                out.append(v)
    return out


def _window_count(fd: FeatureDef, events: list[Event], as_of: int, back: int = 0) -> int:
    n = 0
    for ev in events:
        if _in_window(fd, ev.ts_ms, as_of, back):
            n += 1
    return n


def oracle(features: FeatureSet, events_in_arrival_order: list[Event], lateness_ms: int, as_of_ms: int):
    """Every feature recomputed from the raw events; absent features are not in the dict."""
    decisions = oracle_lateness(events_in_arrival_order, lateness_ms)
    accepted = [ev for ev, ok in zip(events_in_arrival_order, decisions, strict=True) if ok]
    for ev in accepted:
        assert ev.ts_ms <= as_of_ms, "as_of must be at or after every accepted event"
    T = as_of_ms
    vals: dict[str, float] = {}
    for fd in features.features:
        if fd.agg == "expr":
            v = _eval_expr(ast.parse(fd.expr, mode="eval"), vals)
            if v is not None:
                vals[fd.name] = v
            continue
        matching = [ev for ev in accepted if _matches(fd, ev)]  # still in arrival order
        if fd.agg == "count":
            vals[fd.name] = _window_count(fd, matching, T)
        elif fd.agg == "sum":
            vals[fd.name] = math.fsum(_window_values(fd, matching, T))
        elif fd.agg in ("avg", "min", "max"):
            xs = _window_values(fd, matching, T)
            if xs:
                vals[fd.name] = {"avg": math.fsum(xs) / len(xs), "min": min(xs), "max": max(xs)}[fd.agg]
        elif fd.agg == "distinct":
            keys = set()
            for ev in matching:
                v = _read(ev, fd.value)
                if v is not _MISSING and _in_window(fd, ev.ts_ms, T):
                    keys.add(_distinct_key(v))
            vals[fd.name] = len(keys)
        elif fd.agg == "last":
            best_ts, best = None, None
            for ev in matching:
                v = _numeric_value(fd, ev)
                if v is not None and (best_ts is None or ev.ts_ms >= best_ts):
                    best_ts, best = ev.ts_ms, v
            if best_ts is not None:
                vals[fd.name] = best
        elif fd.agg == "recency":
            if matching:
                newest = max(ev.ts_ms for ev in matching)
                vals[fd.name] = (T - newest) / fd.unit_ms
        elif fd.agg == "first_seen":
            if matching:
                vals[fd.name] = min(ev.ts_ms for ev in matching) / 1000
        elif fd.agg == "age":
            if matching:
                vals[fd.name] = (T - min(ev.ts_ms for ev in matching)) / fd.unit_ms
        elif fd.agg == "decayed_sum":
            total = 0.0
            for ev in matching:
                if fd.value is None:
                    weight = 1
                else:
                    weight = _numeric_value(fd, ev)
                    if weight is None:
                        continue
                total += weight * 2 ** (-(T - ev.ts_ms) / fd.half_life_ms)
            vals[fd.name] = total
        elif fd.agg == "trend":
            if fd.of == "count":
                vals[fd.name] = _window_count(fd, matching, T) - _window_count(fd, matching, T, back=1)
            else:
                vals[fd.name] = math.fsum(_window_values(fd, matching, T)) - math.fsum(
                    _window_values(fd, matching, T, back=1)
                )
        else:
            raise AssertionError(f"oracle does not know agg {fd.agg}")
    return vals


def distinct_exceeded(fd: FeatureDef, events: list[Event], lateness_ms: int, as_of_ms: int) -> bool:
    """True when some bucket in the window of a distinct feature holds more than max_distinct values."""
    decisions = oracle_lateness(events, lateness_ms)
    w = fd.window_ms // fd.buckets
    per_bucket: dict[int, set] = {}
    for ev, ok in zip(events, decisions, strict=True):
        v = _read(ev, fd.value)
        if ok and _matches(fd, ev) and v is not _MISSING and _in_window(fd, ev.ts_ms, as_of_ms):
            per_bucket.setdefault(ev.ts_ms // w, set()).add(_distinct_key(v))
    return any(len(s) > fd.max_distinct for s in per_bucket.values())


# --------------------------------------------------------------------------------------
# The feature set under test: every aggregation, several windows and bucket counts
# --------------------------------------------------------------------------------------

FEATURES = parse_features(
    {
        "feature": [
            {"name": "events_1h", "agg": "count", "window": "1h", "buckets": 12},
            {"name": "views_24h", "agg": "count", "types": ["page_view"], "window": "24h", "buckets": 24},
            {"name": "orders_7d", "agg": "count", "types": ["order_paid"], "window": "7d", "buckets": 7},
            {
                "name": "big_orders_7d", "agg": "count", "types": ["order_paid"],
                "where": [["props.amount", ">=", 100]], "window": "7d", "buckets": 7,
            },
            {"name": "app_events_24h", "agg": "count", "where": [["source", "==", "app"]], "window": "24h"},
            {
                "name": "off_web_orders_24h", "agg": "count", "types": ["order_paid"],
                "where": [["props.channel", "!=", "web"]], "window": "24h", "buckets": 6,
            },
            {
                "name": "revenue_24h", "agg": "sum", "types": ["order_paid"], "value": "props.amount",
                "window": "24h", "buckets": 24,
            },
            {
                "name": "refunds_24h", "agg": "sum", "types": ["refund"], "value": "props.amount",
                "window": "24h", "buckets": 24,
            },
            {
                "name": "app_pos_revenue_7d", "agg": "sum", "types": ["order_paid"],
                "where": [["props.channel", "in", ["app", "pos"]]], "value": "props.amount",
                "window": "7d", "buckets": 7,
            },
            {
                "name": "avg_order_6h", "agg": "avg", "types": ["order_paid"], "value": "props.amount",
                "window": "6h", "buckets": 6,
            },
            {"name": "min_amount_7d", "agg": "min", "value": "props.amount", "window": "7d", "buckets": 7},
            {"name": "max_amount_2h", "agg": "max", "value": "props.amount", "window": "2h", "buckets": 1},
            {
                "name": "skus_24h", "agg": "distinct", "types": ["cart_add", "order_paid"],
                "value": "props.sku", "window": "24h", "buckets": 4, "max_distinct": 4,
            },
            {
                "name": "last_amount", "agg": "last", "types": ["order_paid", "refund"],
                "value": "props.amount",
            },
            {"name": "days_since_order", "agg": "recency", "types": ["order_paid"], "unit": "d"},
            {"name": "secs_since_seen", "agg": "recency"},
            {"name": "first_order", "agg": "first_seen", "types": ["order_paid"]},
            {"name": "first_seen", "agg": "first_seen"},
            {"name": "days_since_first_order", "agg": "age", "types": ["order_paid"], "unit": "d"},
            {"name": "orders_life", "agg": "count", "types": ["order_paid"], "window": "lifetime"},
            {"name": "revenue_life", "agg": "sum", "types": ["order_paid"], "value": "props.amount",
             "window": "lifetime"},
            {"name": "aov_life", "agg": "avg", "types": ["order_paid"], "value": "props.amount",
             "window": "lifetime"},
            {"name": "activity_decayed", "agg": "decayed_sum", "half_life": "1h"},
            {
                "name": "spend_decayed", "agg": "decayed_sum", "types": ["order_paid"],
                "value": "props.amount", "half_life": "1h",
            },
            {"name": "views_trend_1h", "agg": "trend", "types": ["page_view"], "window": "1h", "buckets": 12},
            {
                "name": "revenue_trend_24h", "agg": "trend", "of": "sum", "types": ["order_paid"],
                "value": "props.amount", "window": "24h", "buckets": 24,
            },
            {"name": "net_24h", "agg": "expr", "expr": "revenue_24h - refunds_24h"},
            {"name": "revenue_per_order", "agg": "expr", "expr": "revenue_24h / orders_7d"},
            {"name": "avg_mix", "agg": "expr", "expr": "(avg_order_6h + 1) * 2 - -net_24h / 4"},
        ]
    }
)  # fmt: skip

EXACT_AGGS = {"count", "distinct", "first_seen", "recency", "min", "max", "last"}
AGGS_COVERED = {fd.agg for fd in FEATURES.features}


def _exact(fd: FeatureDef) -> bool:
    return fd.agg in EXACT_AGGS or (fd.agg == "trend" and fd.of == "count")


def diff(fs: FeatureSet, got: dict[str, float], want: dict[str, float]) -> list[str]:
    """Human-readable differences between the implementation's map and the oracle's."""
    out = []
    for fd in fs.features:
        g, w = got.get(fd.name, "<absent>"), want.get(fd.name, "<absent>")
        if isinstance(g, str) or isinstance(w, str) or _exact(fd):
            same = g == w
        else:
            same = math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9)
        if not same:
            out.append(f"{fd.name} ({fd.agg}): implementation {g!r}, oracle {w!r}")
    extra = set(got) - set(fs.names())
    if extra:
        out.append(f"unexpected keys {sorted(extra)}")
    return out


def check(pf: ProfileFeatures, fs: FeatureSet, events: list[Event], as_of: int, what: str = "") -> None:
    got = pf.values(as_of)
    want = oracle(fs, events, LATENESS, as_of)
    problems = diff(fs, got, want)
    assert not problems, f"{what} as_of={as_of}:\n  " + "\n  ".join(problems)


def ev(i: int, type_: str, ts: int, props: dict[str, Any] | None = None, source: str = "web") -> Event:
    return Event(f"e{i}", "p1", type_, ts, source, props or {}, {}, {}, 0, "test", 0, i)


# --------------------------------------------------------------------------------------
# The oracle on its own, against hand-computed values
# --------------------------------------------------------------------------------------


def test_feature_set_covers_every_aggregation():
    from flows.features.declarations import AGGREGATIONS

    assert set(AGGREGATIONS) == AGGS_COVERED


def test_oracle_hand_computed_example():
    t0 = 10 * D  # midnight, aligned with every bucket
    events = [
        ev(0, "page_view", t0),
        ev(1, "order_paid", t0 + 10 * M, {"amount": 120, "channel": "app", "sku": "A"}),
        ev(2, "order_paid", t0 + 20 * M, {"amount": "50", "channel": "web", "sku": "B"}),  # string: no value
        ev(3, "refund", t0 + 30 * M, {"amount": 20.5}),
        ev(4, "cart_add", t0 + 40 * M, {"sku": "A"}, source="app"),
        ev(5, "order_paid", t0 + 50 * M, {"amount": 30, "channel": "pos", "sku": 7}),
    ]
    T = t0 + 60 * M
    got = oracle(FEATURES, events, LATENESS, T)
    assert got["events_1h"] == 5  # t0 falls out: T//5m - 12 == t0//5m
    assert got["views_24h"] == 1
    assert got["orders_7d"] == 3
    assert got["big_orders_7d"] == 1  # "50" is not >= 100, 30 is not
    assert got["app_events_24h"] == 1
    assert got["off_web_orders_24h"] == 2  # app and pos
    assert got["revenue_24h"] == 150
    assert got["refunds_24h"] == 20.5
    assert got["app_pos_revenue_7d"] == 150
    assert got["avg_order_6h"] == 75
    assert got["min_amount_7d"] == 20.5
    assert got["max_amount_2h"] == 120
    assert got["skus_24h"] == 3  # A, B, 7
    assert got["last_amount"] == 30
    assert got["days_since_order"] == 10 * M / D
    assert got["secs_since_seen"] == 600
    assert got["first_order"] == (t0 + 10 * M) / 1000
    assert got["first_seen"] == t0 / 1000
    assert math.isclose(got["activity_decayed"], sum(2 ** (-(60 - m) / 60) for m in (0, 10, 20, 30, 40, 50)))
    assert math.isclose(got["spend_decayed"], 120 * 2 ** (-50 / 60) + 30 * 2 ** (-10 / 60))
    assert got["views_trend_1h"] == -1  # the view at t0 is in the previous window now
    assert got["revenue_trend_24h"] == 150
    assert got["net_24h"] == 129.5
    assert got["revenue_per_order"] == 50
    assert got["avg_mix"] == (75 + 1) * 2 + 129.5 / 4


def test_oracle_absent_and_zero_when_nothing_matches():
    got = oracle(FEATURES, [ev(0, "page_view", 5 * D)], LATENESS, 5 * D)
    for name in ("avg_order_6h", "min_amount_7d", "max_amount_2h", "last_amount", "days_since_order",
                 "first_order", "revenue_per_order", "avg_mix"):  # fmt: skip
        assert name not in got
    assert got["revenue_24h"] == 0 and got["orders_7d"] == 0 and got["skus_24h"] == 0
    assert got["spend_decayed"] == 0 and got["activity_decayed"] == 1
    assert got["net_24h"] == 0 and got["events_1h"] == 1 and got["secs_since_seen"] == 0


def test_oracle_lateness_and_last_ties():
    t = 100 * D
    events = [
        ev(0, "order_paid", t, {"amount": 1}),
        ev(1, "order_paid", t - H, {"amount": 2}),  # exactly the lateness behind: accepted
        ev(2, "order_paid", t - H - 1, {"amount": 3}),  # late
        ev(3, "order_paid", t, {"amount": 4}),  # same ts as e0, later arrival: wins `last`
        ev(4, "order_paid", t + 2 * H, {"amount": True}),  # bool is no number
        ev(5, "order_paid", t + H, {"amount": 5}),  # 1h behind the newest: accepted
    ]
    assert oracle_lateness(events, LATENESS) == [True, True, False, True, True, True]
    got = oracle(FEATURES, events, LATENESS, t + 2 * H)
    assert got["last_amount"] == 5
    got = oracle(FEATURES, events[:4], LATENESS, t)
    assert got["last_amount"] == 4
    assert got["orders_7d"] == 3
    assert got["revenue_24h"] == 7


def test_oracle_window_edges_move_in_bucket_steps():
    fd = FEATURES.features[0]  # events_1h: 12 buckets of 5 minutes
    assert fd.name == "events_1h" and fd.bucket_ms == 5 * M
    ts = 50 * D + 2 * M  # inside a bucket
    assert _in_window(fd, ts, ts + 55 * M + 2 * M)  # still in: last bucket is ts//w + 11
    assert not _in_window(fd, ts, ts + 58 * M)  # next bucket: out, < 1h after ts
    aligned = 50 * D
    assert _in_window(fd, aligned, aligned + H - 1)
    assert not _in_window(fd, aligned, aligned + H)
    assert _in_window(fd, aligned, aligned + 2 * H - 1, windows_back=1)
    assert not _in_window(fd, aligned, aligned + 2 * H, windows_back=1)


# --------------------------------------------------------------------------------------
# Explicit examples against the implementation
# --------------------------------------------------------------------------------------


def test_silent_profile_count_and_sum_fall_to_zero_not_absent():
    fs = parse_features(
        {
            "feature": [
                {"name": "n_1h", "agg": "count", "window": "1h", "buckets": 12},
                {"name": "amount_1h", "agg": "sum", "value": "props.amount", "window": "1h", "buckets": 12},
                {"name": "avg_1h", "agg": "avg", "value": "props.amount", "window": "1h", "buckets": 12},
            ]
        }
    )
    ts = BASE_TS + 123_456
    pf = ProfileFeatures(FeaturePlan(fs), lateness_ms=LATENESS)
    assert pf.add(ev(0, "order_paid", ts, {"amount": 7}))
    assert pf.values(ts) == {"n_1h": 1, "amount_1h": 7, "avg_1h": 7}
    after = pf.values(ts + H + fs.features[0].bucket_ms)
    assert after == {"n_1h": 0, "amount_1h": 0}  # avg of nothing is absent, count/sum are 0
    assert pf.values(ts + 30 * D) == {"n_1h": 0, "amount_1h": 0}


def test_windows_no_read_can_reach_are_freed():
    """Orders, then only page views 10 days later: the order windows' states are freed (a
    profile keeps what its recent activity needs, not every event type it ever had), no
    value changes by it, and the next changed() reports the freed features' empty values."""
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    seen = [
        ev(0, "order_paid", BASE_TS, {"amount": 150, "sku": "A", "channel": "app"}),
        ev(1, "order_paid", BASE_TS + M, {"amount": 20, "sku": "B", "channel": "pos"}),
    ]
    for e in seen:
        assert pf.add(e)
    pf.changed(BASE_TS + M, BASE_TS)
    held = set(pf.buckets_held())
    size = len(pickle.dumps(pf))
    later = BASE_TS + 10 * D
    seen.append(ev(2, "page_view", later))
    assert pf.add(seen[-1])
    kept = pf.buckets_held()
    assert {"orders_7d", "min_amount_7d", "max_amount_2h", "events_1h"} <= held
    assert "orders_7d" not in kept
    for name in ("min_amount_7d", "max_amount_2h"):  # they match any type: renewed, but empty
        assert kept.get(name, 0) == 0
    assert {"events_1h", "views_24h"} <= kept.keys()  # the page view's own windows
    assert len(pickle.dumps(pf)) < size
    check(pf, FEATURES, seen, later, "after the sweep")
    check(pf, FEATURES, seen, later + 2 * D, "silent after the sweep")
    values, gone = pf.changed(later, BASE_TS + M)
    assert values["orders_7d"] == 0.0 and "min_amount_7d" in gone


def test_late_event_is_refused_and_changes_nothing():
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    events = [ev(0, "order_paid", BASE_TS, {"amount": 10, "sku": "A"})]
    assert pf.add(events[0])
    before = pf.values(BASE_TS)
    late = ev(1, "order_paid", BASE_TS - H - 1, {"amount": 99, "sku": "B"})
    assert pf.add(late) is False
    events.append(late)
    assert pf.values(BASE_TS) == before
    check(pf, FEATURES, events, BASE_TS)
    ok = ev(2, "order_paid", BASE_TS - H, {"amount": 5, "sku": "C"})
    assert pf.add(ok) is True
    events.append(ok)
    check(pf, FEATURES, events, BASE_TS)


def test_distinct_beyond_max_distinct_is_a_lower_bound():
    fs = parse_features(
        {
            "feature": [
                {"name": "skus", "agg": "distinct", "value": "props.sku", "window": "4h", "buckets": 4,
                 "max_distinct": 2},
            ]
        }
    )  # fmt: skip
    pf = ProfileFeatures(FeaturePlan(fs), lateness_ms=LATENESS)
    events = [ev(i, "cart_add", BASE_TS + i * M, {"sku": s}) for i, s in enumerate("ABCDAE")]
    for e in events:
        assert pf.add(e)
    T = events[-1].ts_ms
    assert distinct_exceeded(fs.features[0], events, LATENESS, T)
    exact = oracle(fs, events, LATENESS, T)["skus"]
    assert exact == 5
    assert 1 <= pf.values(T)["skus"] <= exact


def test_list_or_object_values_are_not_among_the_listed_ones():
    """Props are any JSON: a list or object where a condition expects a scalar must not raise."""
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    events = [
        ev(0, "order_paid", BASE_TS, {"amount": 10, "channel": "app"}),
        ev(1, "order_paid", BASE_TS + M, {"amount": 20, "channel": ["app"]}),
        ev(2, "order_paid", BASE_TS + 2 * M, {"amount": 40, "channel": {"name": "pos"}}),
        ev(3, "order_paid", BASE_TS + 3 * M, {"amount": [100], "channel": "pos"}),
    ]
    for e in events:
        assert pf.add(e) is True
    check(pf, FEATURES, events, BASE_TS + 3 * M)
    assert pf.values(BASE_TS + 3 * M)["app_pos_revenue_7d"] == 10


def test_window_sum_forgets_a_large_value_exactly():
    """A sum whose window once held a large value is exact once that value has left it
    (no drift from a running total that adds and later subtracts it)."""
    fs = parse_features(
        {
            "feature": [
                {"name": "s", "agg": "sum", "value": "props.amount", "window": "1h", "buckets": 12},
                {"name": "a", "agg": "avg", "value": "props.amount", "window": "1h", "buckets": 12},
                {"name": "t", "agg": "trend", "of": "sum", "value": "props.amount", "window": "1h",
                 "buckets": 12},
            ]
        }
    )  # fmt: skip
    t0 = BASE_TS - BASE_TS % H
    for big, small in ((1e9 + 0.5, (0.01, 0.02)), (1e17, (1.0, 0.0))):
        pf = ProfileFeatures(FeaturePlan(fs), lateness_ms=LATENESS)
        events = [
            ev(0, "x", t0, {"amount": big}),
            ev(1, "x", t0 + 30 * M, {"amount": small[0]}),
            ev(2, "x", t0 + 61 * M, {"amount": small[1]}),  # the big one's bucket has left the window
            ev(3, "x", t0 + 150 * M, {"amount": small[1]}),  # ... and the previous window
        ]
        for k, e in enumerate(events):
            assert pf.add(e)
            check(pf, fs, events[: k + 1], e.ts_ms, f"big={big}")


# --------------------------------------------------------------------------------------
# Hypothesis: random streams for one profile
# --------------------------------------------------------------------------------------

TYPES = ("page_view", "cart_add", "order_paid", "refund")
_amount = st.one_of(
    st.just(_MISSING),
    st.none(),
    st.integers(0, 500),
    st.floats(0, 500, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 2)),
    st.sampled_from(["150", "abc", True, False, 100, 100.0, [5], {"v": 5}]),
)
_props = st.fixed_dictionaries(
    {
        "amount": _amount,
        "channel": st.sampled_from([_MISSING, "web", "app", "pos", "email"]),
        "sku": st.sampled_from([_MISSING, "A", "B", "C", "D"]),
    }
).map(lambda p: {k: v for k, v in p.items() if v is not _MISSING})


@st.composite
def streams(draw, max_size: int = 30) -> list[Event]:
    """One profile's events: ts a random walk forward, then shuffled locally on arrival."""
    base = draw(st.one_of(st.just(BASE_TS - BASE_TS % (7 * D)), st.integers(BASE_TS, BASE_TS + 7 * D)))
    n = draw(st.integers(1, max_size))
    ts = base
    rows = []
    for i in range(n):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            step = draw(st.integers(1 * D, 3 * D))  # a quiet spell
        elif kind <= 2:
            step = draw(st.sampled_from([0, 5 * M, 30 * M, H, 2 * H]))  # bucket and lateness edges
        else:
            step = draw(st.integers(0, 3 * H))
        ts += step
        delay = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 5]))  # arrives `delay` places later
        rows.append(
            (
                i + delay,
                i,
                draw(st.sampled_from(TYPES)),
                ts,
                draw(_props),
                draw(st.sampled_from(["web", "app"])),
            )
        )
    rows.sort()
    return [ev(i, type_, t, props, source) for _, i, type_, t, props, source in rows]


SILENT = (30 * M, 2 * H, 2 * D, 10 * D)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.integers(0, 8 * D))
def test_matches_oracle_after_every_add_and_while_silent(events, extra):
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    decisions = oracle_lateness(events, LATENESS)
    seen: list[Event] = []
    newest = None
    for e, expect_accepted in zip(events, decisions, strict=True):
        accepted = pf.add(e)
        assert accepted == expect_accepted, f"add({e.event_id}, ts={e.ts_ms}) returned {accepted}"
        seen.append(e)
        if accepted:
            newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        check(pf, FEATURES, seen, newest, f"after {e.event_id}")
    for gap in (*SILENT, extra):
        check(pf, FEATURES, seen, newest + gap, f"silent +{gap}ms")


SMALL_DISTINCT = parse_features(
    {
        "feature": [
            {"name": "skus_4h", "agg": "distinct", "value": "props.sku", "window": "4h", "buckets": 4,
             "max_distinct": 2},
            {"name": "skus_1d", "agg": "distinct", "value": "props.sku", "window": "1d", "buckets": 1,
             "max_distinct": 3},
        ]
    }
)  # fmt: skip


def test_a_snapshot_holding_distinct_values_as_sets_restores_as_digests():
    """Snapshots written before the digests held each bucket's values in a set."""
    skus_4h = {"name": "skus_4h", "agg": "distinct", "value": "props.sku", "window": "4h", "buckets": 4}
    fs = parse_features({"feature": [skus_4h]})
    plan = FeaturePlan(fs)
    skus = [("A", 0), (7, 10 * M), ("B", 2 * H), (7.0, 2 * H + M), ("A", 2 * H + 2 * M)]
    events = [ev(i, "cart_add", BASE_TS + dt, {"sku": v}) for i, (v, dt) in enumerate(skus)]
    live = ProfileFeatures(plan, lateness_ms=LATENESS)
    for e in events:
        assert live.add(e)
    lateness, newest, states = live.__getstate__()
    buckets: dict[int, set[Any]] = {}  # rebuilt the old way: bucket, set of values, ...
    for e in events:
        buckets.setdefault(e.ts_ms // H, set()).add(e.props["sku"])
    fp = states["skus_4h"][0]
    old = {"skus_4h": (fp, [x for b, vs in sorted(buckets.items()) for x in (b, vs)])}
    restored = ProfileFeatures()
    restored.__setstate__((lateness, newest, old))
    restored.bind(plan)
    assert restored.values(newest) == live.values(newest) == {"skus_4h": 3.0}
    for sku in ("A", 7, "C"):  # into the newest bucket: a value it holds, then a new one
        e = ev(9, "cart_add", newest + M, {"sku": sku})
        assert restored.add(e) and live.add(e)
        assert restored.values(newest + M) == live.values(newest + M)
    assert live.values(newest + M) == {"skus_4h": 4.0}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_distinct_is_exact_within_max_distinct_and_a_lower_bound_beyond(events):
    pf = ProfileFeatures(FeaturePlan(SMALL_DISTINCT), lateness_ms=LATENESS)
    seen: list[Event] = []
    newest = None
    for e in events:
        if pf.add(e):
            newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        seen.append(e)
        for as_of in (newest, newest + 3 * H):
            got = pf.values(as_of)
            want = oracle(SMALL_DISTINCT, seen, LATENESS, as_of)
            for fd in SMALL_DISTINCT.features:
                if distinct_exceeded(fd, seen, LATENESS, as_of):
                    assert got[fd.name] <= want[fd.name], (fd.name, as_of)
                else:
                    assert got[fd.name] == want[fd.name], (fd.name, as_of)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(0, 3 * D), min_size=1, max_size=30))
def test_queries_ahead_of_the_events_do_not_disturb_later_adds(events, offsets):
    """values() at a later as_of (e.g. a timer while the profile is quiet), then more events
    that are still on time: the later answers, at monotone as_of, match the oracle."""
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    seen: list[Event] = []
    newest = None
    as_of = 0
    for k, e in enumerate(events):
        if pf.add(e):
            newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        seen.append(e)
        as_of = max(as_of, newest)
        check(pf, FEATURES, seen, as_of, f"after {e.event_id}")
        as_of += offsets[k % len(offsets)] // 8
        check(pf, FEATURES, seen, as_of, f"ahead after {e.event_id}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(0, 3 * D), min_size=1, max_size=30))
def test_values_is_a_pure_read(events, offsets):
    """values(as_of) at any as_of >= the accepted events does not change later answers,
    even when a later call asks about an earlier as_of."""
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    seen: list[Event] = []
    newest = None
    for k, e in enumerate(events):
        if pf.add(e):
            newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        seen.append(e)
        pf.values(newest + offsets[k % len(offsets)])
        check(pf, FEATURES, seen, newest, f"after {e.event_id}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_pickled_state_continues_identically(events, data):
    cut = data.draw(st.integers(0, len(events)))
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    newest = None
    for e in events[:cut]:
        if pf.add(e):
            newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
    clone = pickle.loads(pickle.dumps(pf))
    clone.bind(pf.plan)  # a restored state is bound to the running plan
    if newest is not None:
        assert clone.values(newest) == pf.values(newest)
    for e in events[cut:]:
        a, b = pf.add(e), clone.add(e)
        assert a == b
        if a:
            newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        assert clone.values(newest) == pf.values(newest)
    for gap in SILENT:
        assert clone.values(newest + gap) == pf.values(newest + gap)
    check(clone, FEATURES, events, newest + SILENT[-1], "clone")


# A profile pickled with one object per feature state (classes `_Count`, `_Sum`, `_Avg`,
# `_Extreme`, `_Distinct`, `_Trend`, `_Last`, `_Recency`, `_FirstSeen`, `_Decayed` of
# flows.features.aggregates), after the first 7 of `_restore_events()`; zlib, base64.
# Written by a process that printed every set sorted, so its fingerprints are the stable ones.
OBJECT_SNAPSHOT = (
    "eNqNlMtuHEUUhsfYHtsxJA4LpOyyNBtT1VXVXc2CDCSxJcdBUQJICIVWXd2tjHtGfbFnFo6cTSI5jYSgWIQFwrwEIPEOICFW"
    "YcsW8QhU3+aSOIhezKW76vv/+vucc7L0je52qqt4S/cHR+mWVizLE5VuHUWxtDdMcelOMtBRX203T8zX5u1HZvfkb7dz2u2c"
    "jf94unBsNos1dajiLA1gaIoNz9eQaM+Trs8dhrkprryAZ/v7idpnmeUV3eD6II+zGvxhCVtkQpj7ZufaP7U7VixGcmTv7P4w"
    "+sT+W4jNrU6xnA0y1p+uyh8b/tgUa4eROkoDB5dOMHQx83zOfKGkC10TrjUi4euzAuFFC/8Jr9hfG7c64eWXoINEqiQNPFkd"
    "z8HSBQJw5EKKvHno5mTvTq/+7qgSv3n7+d7tP/dUI9BbnRN4g0f7wawIQ9DBWFBKCEEucf7LuSW/wvd6onQeyzYOBSRTAgjs"
    "uVhw7ptwpVgK7uUH0/Areg9feWavb+tczmZyaZ80/DfZcBgMB2mQlO8/V7V36hPsOR4jUCvkCWDCd+YC6n1+tQnovU8r2rkB"
    "8eeovNqADqI4YAdlpdQimCAoPZdqDh3hOro8y2pwc5Ql6kDNFNMKz8UDlaXmuFKYiFupnWs/P6tPUywNI/HAFKs8j/pZFNuy"
    "XLSCFjORZ6NW3imj9AnHzNEAOAQyyKkJ32/PeOPYhNvhjiWw0ZSw3mdp1iDsfomRRA71sSLAJYCX9peDPbtmxvtr1vZp9wSd"
    "/vZ0oVg4NC/GvyHZOA3SKBaqLh57CwgtCcbSYwpTB5E6l7tKqFiMJ+zws9Nu75fYctMadSlVokWlSsXla3Qp0IxJW+eOVBSa"
    "kE83163fbF7XUWIP11qAWHKkPM8XDvGBQKWFC8F2ueZeiZ410Qn/+nXCuVBzGn3XJ76WFFOqmUt8G9HwFfs2mMiiwygbB1IJ"
    "NlZVl2IgIWSY+Qq61GN1Djea5zP1XvXMx3funxWLtltMe7T2xadDFcsZrvQo5QgJIKnGoKy7h1NU76a6++7x7z+Gj9p4G8zF"
    "eirZ4rSwakhyKQnyiAMRl75PQemvG3xULpi4K5ajOLaRVtY/aOp4vlXnR1g1H88ZBU1Ol9s2rX3UQ4EyB2FNAQfKBwragvmi"
    "ifnL8Kv/07e739kBsfu9/Tivd2vp/InhW/8C3l9IfQ=="
)


def _restore_events() -> list[Event]:
    """Every aggregation, several buckets, one event out of order; restored after 7."""
    return [
        ev(0, "order_paid", BASE_TS, {"amount": 120.5, "sku": "A", "channel": "app"}),
        ev(1, "page_view", BASE_TS + 7 * M),
        ev(2, "cart_add", BASE_TS + 40 * M, {"sku": "B"}, source="app"),
        ev(3, "order_paid", BASE_TS + 2 * H, {"amount": 30.25, "sku": 7, "channel": "pos"}),
        ev(4, "refund", BASE_TS + 3 * H, {"amount": 20.1}),
        ev(5, "order_paid", BASE_TS + 3 * H - 30 * M, {"amount": 0.1, "sku": "C", "channel": "app"}),
        ev(6, "page_view", BASE_TS + 26 * H),
        ev(7, "order_paid", BASE_TS + 26 * H + 5 * M, {"amount": 99.9, "sku": "A", "channel": "app"}),
        ev(8, "page_view", BASE_TS + 26 * H + 9 * M),
        ev(9, "cart_add", BASE_TS + 3 * D, {"sku": "D"}),
        ev(10, "order_paid", BASE_TS + 8 * D, {"amount": 5, "sku": "E", "channel": "web"}),
    ]


# The features that snapshot was written with (those added later start empty on restore).
OBJECT_FEATURES = dataclasses.replace(
    FEATURES,
    features=tuple(
        f for f in FEATURES.features
        if f.name not in ("days_since_first_order", "orders_life", "revenue_life", "aov_life")
    ),
)  # fmt: skip


def test_a_snapshot_of_one_object_per_feature_restores_and_continues_identically():
    events = _restore_events()
    plan = FeaturePlan(OBJECT_FEATURES)
    restored = pickle.loads(zlib.decompress(base64.b64decode(OBJECT_SNAPSHOT)))
    restored.bind(plan)
    live = ProfileFeatures(plan, lateness_ms=LATENESS)
    for e in events[:7]:
        assert live.add(e)
    newest = max(e.ts_ms for e in events[:7])
    assert restored.max_ts == newest
    assert restored.buckets_held() == live.buckets_held()
    for gap in (0, *SILENT):
        assert restored.values(newest + gap) == live.values(newest + gap)
    for e in events[7:]:
        assert restored.add(e) == live.add(e)
        newest = max(newest, e.ts_ms)
        assert restored.values(newest) == live.values(newest)
    check(restored, OBJECT_FEATURES, events, newest, "restored")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(0, 3 * D), min_size=1, max_size=30))
def test_changed_read_from_the_full_map_is_the_same_answer(events, offsets):
    """changed(as_of, since, values(as_of)) answers exactly what changed(as_of, since)
    does (same values, same names gone, same order), at every update of a stream."""
    plan = FeaturePlan(FEATURES)
    a = ProfileFeatures(plan, lateness_ms=LATENESS)
    b = ProfileFeatures(plan, lateness_ms=LATENESS)
    since = newest = None
    for k, e in enumerate(events):
        if a.add(e) != b.add(e):
            raise AssertionError("the two states took different events")
        newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        as_of = newest + offsets[k % len(offsets)]
        if since is None:
            since = as_of
        got = b.changed(as_of, since, b.values(as_of))
        want = a.changed(as_of, since)
        assert list(got[0].items()) == list(want[0].items()) and got[1] == want[1]
        since = as_of


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(0, 9 * D), min_size=1, max_size=30), st.booleans())
def test_changed_reports_every_feature_whose_value_moved(events, offsets, objects):
    """Between two updates (events or only time in between, silences up to 9 days), every
    feature whose value differs is reported: with its new value, or as gone."""
    fs = OBJECT_FEATURES if objects else FEATURES
    pf = ProfileFeatures(FeaturePlan(fs), lateness_ms=LATENESS)
    since = newest = None
    before: dict[str, float] = {}
    for k, e in enumerate(events):
        pf.add(e)
        newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        as_of = newest + offsets[k % len(offsets)]
        if since is None:
            since = as_of
            pf.changed(as_of, as_of)
            before = pf.values(as_of)
            continue
        values, gone = pf.changed(as_of, since)
        now = pf.values(as_of)
        moved = {n for n in before.keys() | now.keys() if before.get(n) != now.get(n)}
        assert moved <= values.keys() | set(gone), moved - values.keys() - set(gone)
        assert all(now[n] == v for n, v in values.items()) and not set(gone) & now.keys()
        since, before = as_of, now


def test_a_window_is_reported_when_a_bucket_with_data_leaves_it_not_at_every_edge():
    """A silent profile's 7-day count moves only when its order's day leaves the window:
    crossing the windows' daily edges alone reports nothing (nothing to write)."""
    pf = ProfileFeatures(FeaturePlan(FEATURES), lateness_ms=LATENESS)
    pf.add(ev(0, "order_paid", BASE_TS, {"amount": 20, "sku": "A"}))
    pf.changed(BASE_TS, BASE_TS)
    values, _ = pf.changed(BASE_TS + 3 * D, BASE_TS)
    assert "orders_7d" not in values and "revenue_24h" in values  # the order's day left 24h only
    values, _ = pf.changed(BASE_TS + 5 * D, BASE_TS + 3 * D)
    assert not {"orders_7d", "revenue_24h"} & values.keys()  # both already as they stay
    values, _ = pf.changed(BASE_TS + 8 * D, BASE_TS + 5 * D)
    assert values["orders_7d"] == 0.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(0, 3 * D), min_size=1, max_size=30), st.integers(0, 2**40))
def test_a_partial_read_is_the_full_map_cut_to_the_features_asked(events, offsets, pick):
    """read(bits, as_of) gives the asked features exactly as values(as_of) does (exprs too)."""
    plan = FeaturePlan(FEATURES)
    pf = ProfileFeatures(plan, lateness_ms=LATENESS)
    bits = pick & ((1 << len(plan.names)) - 1)
    asked = set(plan.names_of(bits))
    newest = None
    for k, e in enumerate(events):
        pf.add(e)
        newest = e.ts_ms if newest is None else max(newest, e.ts_ms)
        as_of = newest + offsets[k % len(offsets)]
        full = pf.values(as_of)
        got = pf.read(bits, as_of)
        assert {n: v for n, v in got.items() if n in asked} == {n: v for n, v in full.items() if n in asked}
