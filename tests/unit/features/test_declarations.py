"""Feature declarations: the shipped file is valid; a bad one is refused with file, entry and reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.core.durations import parse_duration
from flows.core.errors import ConfigError
from flows.core.resources import config_dir
from flows.features.declarations import AGGREGATIONS, load_features, parse_features


def test_shipped_features_cover_the_scrm_default_set():
    fs = load_features(config_dir() / "features.toml")
    names = set(fs.names())
    for family in ("page_views", "sessions", "add_to_cart", "orders", "revenue"):
        assert {f"{family}_{w}" for w in ("1h", "24h", "7d", "30d", "90d")} <= names
    assert {"days_since_last_order", "days_since_last_seen", "open_cart_value", "complaints_30d",
            "tickets_30d", "messages_opened_7d", "messages_clicked_30d", "messages_replied_7d",
            "sales_activity_7d"} <= names  # fmt: skip
    assert {f.agg for f in fs.features} == set(AGGREGATIONS)


def good(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "x", "agg": "count", "types": ["page_view"], "window": "1h"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("entry", "where", "what"),
    [
        (good(agg="median"), "feature[1] (x).agg", "unknown aggregation 'median'"),
        (good(window="1 hour"), "feature[1] (x).window", "does not parse"),
        (good(window=...), "feature[1] (x).window", "needs a window"),
        (good(agg="sum"), "feature[1] (x).value", "needs a value field"),
        (good(agg="sum", value="amount"), "feature[1] (x).value", "cannot exist in an event"),
        (good(agg="sum", value="props."), "feature[1] (x).value", "cannot exist in an event"),
        (good(window="1h", buckets=7), "feature[1] (x).buckets", "not divisible"),
        (good(name="Bad-Name"), "feature[1].name", "must match"),
        (good(name="as_of"), "feature[1].name", "reserved"),
        (good(name="a"), "feature[1] (a).name", "duplicate"),
        (good(where=[["props.amount", ">=", "lots"]]), "feature[1] (x).where[0]", "needs a number"),
        (good(where=[["props.amount", "~", 1]]), "feature[1] (x).where[0]", "unknown operator"),
        (good(where=[["amount", "==", 1]]), "feature[1] (x).where[0]", "cannot exist"),
        (
            good(agg="expr", expr="a - nope", types=..., window=...),
            "feature[1] (x).expr",
            "'nope' is not a feature",
        ),
        (
            good(agg="expr", expr="__import__('os')", types=..., window=...),
            "feature[1] (x).expr",
            "may only use",
        ),
        (good(agg="recency", window=..., unit="fortnight"), "feature[1] (x).unit", "does not parse"),
        (good(agg="decayed_sum", window=...), "feature[1] (x).half_life", "duration"),
        (good(colour="red"), "feature[1] (x)", "unknown keys ['colour']"),
    ],
)
def test_bad_declarations_name_file_entry_and_problem(entry, where, what):
    first = {"name": "a", "agg": "count", "window": "1h"}
    with pytest.raises(ConfigError) as info:
        parse_features({"feature": [first, entry]}, "my.toml")
    msg = str(info.value)
    assert msg.startswith(f"my.toml: {where}: "), msg
    assert what in msg, msg


def test_bad_file_is_refused_with_its_name(tmp_path: Path):
    bad = tmp_path / "features.toml"
    bad.write_text('[[feature]]\nname = "n"\nagg = "count"\nwindow = "1y"\n')
    with pytest.raises(ConfigError, match=r"features\.toml: feature\[0\] \(n\)\.window: duration '1y'"):
        load_features(bad)


def test_durations():
    assert parse_duration("15m") == 900_000
    assert parse_duration("2w") == 14 * 86_400_000
    for bad in ("", "h", "1.5h", "-1h", "1h ", "0s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("tag", "what"),
    [
        ({"name": "t", "when": [["nope", ">", 1]]}, "tag[0] (t).when[0]: 'nope' is not a declared feature"),
        ({"name": "t", "when": [["a", "~", 1]]}, "unknown operator"),
        ({"name": "t", "when": [["a", ">", "x"]]}, "is not a number"),
        ({"name": "t", "when": []}, "needs"),
        ({"name": "T!", "when": [["a", ">", 1]]}, "tag[0].name"),
    ],
)
def test_bad_tags_are_refused(tag, what):
    with pytest.raises(ConfigError, match=re.escape(what)):
        parse_features({"feature": [{"name": "a", "agg": "count", "window": "1h"}], "tag": [tag]}, "f.toml")
