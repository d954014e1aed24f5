"""Journey definitions: the shipped examples load, a bad file is refused with file, path and
what, canonical data round-trips, fingerprints and walk order are stable. Pure, no servers."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from flows.core.conditions import Condition as EventCondition
from flows.core.errors import ConfigError
from flows.core.resources import config_dir
from rules.journeys.canonical import fingerprint, to_canonical
from rules.journeys.load import load_folder, load_journey
from rules.journeys.model import (
    AbsenceTrigger,
    AbSplitNode,
    BranchNode,
    DateTrigger,
    ExitNode,
    FeatureCondition,
    Journey,
    PropCondition,
    QuietCondition,
    QuietHours,
    ScoreCondition,
    ScoreTrigger,
    SendNode,
    TagCondition,
    TaskNode,
    walk,
)
from rules.journeys.parse import parse_journey
from rules.journeys.parse_nodes import MAX_DEPTH

JOURNEYS = config_dir() / "journeys"
DROP = object()

BASE: dict[str, Any] = {
    "id": "base",
    "name": "Base",
    "priority": 10,
    "entry": {"policy": "once"},
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    "caps": [{"count": 2, "per": "1d"}],
    "trigger": {"event": {"type": "signup", "where": [["props.amount", ">=", 500]]}},
    "nodes": [
        {"type": "wait", "duration": "1h"},
        {"type": "send", "channel": "sms", "template": "welcome", "vars": {"name": "{{profile.name}}"}},
        {
            "type": "branch",
            "if": [{"tag": "high_value"}, {"feature": "orders_30d", "op": ">=", "value": 3}],
            "then": [{"type": "send", "channel": "wecom", "template": "vip_offer"}],
            "else": [{"type": "send", "channel": "email", "template": "new_user_guide"}],
        },
        {
            "type": "ab_split",
            "arms": [
                {"name": "a", "weight": 45, "then": [{"type": "tag", "add": "welcomed"}]},
                {"name": "b", "weight": 45, "then": [{"type": "task", "assignee": "owner", "title": "Call"}]},
                {"name": "holdout", "weight": 10, "holdout": True},
            ],
        },
        {"type": "ticket", "queue": "service", "priority": "high", "title": "Follow up"},
        {"type": "exit"},
    ],
}


def ed(*edits: Any) -> dict[str, Any]:
    """BASE with values set (or removed, with DROP) at dotted key paths:
    ``ed("nodes.2.then.0.channel", "fax", "caps", DROP)``."""
    data = copy.deepcopy(BASE)
    for path, value in zip(edits[::2], edits[1::2], strict=True):
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target: Any = data
        for k in keys[:-1]:
            target = target[k]
        if value is DROP:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return data


def nested(depth: int) -> dict[str, Any]:
    """A node whose innermost send sits in a node list `depth` levels deep (top level = 1)."""
    node: dict[str, Any] = {"type": "send", "channel": "sms", "template": "t"}
    for _ in range(depth - 1):
        node = {"type": "branch", "if": [{"tag": "x"}], "then": [node]}
    return node


def refused(data: Any, source: str = "t.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_journey(data, source)
    return str(info.value)


# --- the shipped examples ------------------------------------------------------------------


def test_every_shipped_journey_loads_and_round_trips():
    files = sorted(p.name for p in JOURNEYS.iterdir())
    assert files == ["cart_abandoned.yaml", "churn_winback.json", "new_user_warmup.yaml"]
    journeys = load_folder(JOURNEYS)
    assert [j.id for j in journeys] == ["cart_abandoned", "churn_winback", "new_user_warmup"]
    for j in journeys:
        assert j == load_journey(j.source)
        again = parse_journey(json.loads(json.dumps(to_canonical(j))), "<redis>")
        assert again == j and fingerprint(again) == fingerprint(j)
        assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(j))


def test_new_user_warmup_says_what_the_marketers_asked_for():
    j = load_journey(JOURNEYS / "new_user_warmup.yaml")
    assert (j.entry, j.priority, j.trigger.type, j.caps[0].count, j.caps[0].per_ms) == (
        "once", 10, "signup", 2, 86_400_000,
    )  # fmt: skip
    wait, welcome, branch = j.nodes
    assert wait.duration_ms == 3_600_000
    assert (welcome.channel, welcome.template, welcome.vars) == (
        "sms",
        "welcome",
        (("name", "{{profile.name}}"),),
    )
    assert isinstance(branch, BranchNode) and branch.when == (TagCondition("high_value"),)
    assert [(n.channel, n.template) for n in branch.then + branch.otherwise] == [
        ("wecom", "vip_offer"), ("email", "new_user_guide"),
    ]  # fmt: skip


def test_cart_abandoned_and_churn_winback():
    cart = load_journey(JOURNEYS / "cart_abandoned.yaml")
    assert cart.trigger == AbsenceTrigger("add_to_cart", "order_paid", 30 * 60_000)
    assert (cart.entry, cart.entry_days) == ("once_per", 7)
    assert cart.quiet_hours == QuietHours(21 * 60, 8 * 60, "defer")
    (split,) = cart.nodes
    assert isinstance(split, AbSplitNode)
    holdout = [a for a in split.arms if a.holdout]
    assert (
        len(holdout) == 1
        and holdout[0].then == ()
        and holdout[0].weight * 10 == sum(a.weight for a in split.arms)
    )
    assert {n.template for _, n in walk(cart) if isinstance(n, SendNode)} == {"cart_reminder"}
    churn = load_journey(JOURNEYS / "churn_winback.json")
    assert churn.trigger == ScoreTrigger("churn", "churn_risk_high", "up")
    task, send, tag = churn.nodes
    assert isinstance(task, TaskNode) and (task.assignee, task.due_ms) == ("owner", 600_000)
    assert (send.channel, send.template, tag.action, tag.tag) == ("email", "winback", "add", "winback_sent")
    # no win-back right after activity: 30 days without any of the customer's own events
    assert churn.entry_if == (QuietCondition(30 * 86_400_000), ScoreCondition("churn", ">=", 0.7))


# --- parsing ---------------------------------------------------------------------------------


def test_base_parses_with_defaults_and_position_ids():
    j = parse_journey(BASE, "t.yaml")
    assert (j.max_active, j.quiet_hours, j.source, j.version) == (
        1,
        QuietHours(1260, 480, "defer"),
        "t.yaml",
        0,
    )
    assert j.trigger.where == (EventCondition("props.amount", ">=", 500.0),)
    assert j.nodes[2].when[1] == FeatureCondition("orders_30d", ">=", 3.0)
    assert isinstance(j.nodes[-1], ExitNode)
    assert j.nodes[4].priority == "high" and j.nodes[3].arms[1].then[0].due_ms is None


def test_walk_is_depth_first_in_file_order():
    j = parse_journey(BASE, "t.yaml")
    assert [nid for nid, _ in walk(j)] == [
        "n0", "n1", "n2", "n2_then0", "n2_else0", "n3", "n3_arms0_then0", "n3_arms1_then0", "n4", "n5",
    ]  # fmt: skip
    assert all(node.id == nid for nid, node in walk(j))


def test_explicit_ids_are_kept():
    j = parse_journey(ed("nodes.2.then.0.id", "vip"), "t.yaml")
    assert [nid for nid, _ in walk(j)][3] == "vip"


@pytest.mark.parametrize(
    ("trigger", "parsed"),
    [
        ({"absence": {"after": "add_to_cart", "missing": "order_paid", "within": "30m",
                      "where": [["props.sku", "in", ["a", 1, False]]]}},
         AbsenceTrigger("add_to_cart", "order_paid", 1_800_000,
                        (EventCondition("props.sku", "in", frozenset({"a", 1, False})),))),
        ({"inactivity": {"for": "14d"}}, None),
        ({"score": {"model": "churn", "threshold": "high", "direction": "down"}},
         ScoreTrigger("churn", "high", "down")),
        ({"segment": {"enter": "at_risk"}}, None),
        ({"tag": {"removed": "high_value"}}, None),
        ({"date": {"field": "props.birthday", "format": "MM-DD", "offset": "-30d", "at": "10:00"}},
         DateTrigger("props.birthday", "MM-DD", -30, 600)),
        ({"date": {"field": "props.contract_end", "format": "YYYY-MM-DD"}},
         DateTrigger("props.contract_end", "YYYY-MM-DD", 0, 540)),
        ({"event": {"type": "order_paid",
                    "where": [["source", "==", "app"], ["props.coupon", "!=", None]]}}, None),
    ],
)  # fmt: skip
def test_every_trigger_kind_parses_and_round_trips(trigger: dict[str, Any], parsed: Any):
    j = parse_journey(ed("trigger", trigger), "t.yaml")
    if parsed is not None:
        assert j.trigger == parsed
    canon = to_canonical(j)
    assert parse_journey(json.loads(json.dumps(canon)), "<redis>") == j
    assert to_canonical(parse_journey(canon, "x")) == canon


def test_branch_conditions_of_every_kind_round_trip():
    conds = [
        {"not_tag": "vip"}, {"segment": "at_risk"}, {"score": "churn", "op": ">", "value": 0.7},
        {"prop": "props.amount", "op": "in", "value": [100, 200]}, {"prop": "type", "op": "==", "value": "x"},
        {"quiet_for": "14d", "types": ["order_paid", "order_created"]},
    ]  # fmt: skip
    wait = {"type": "wait", "until": "09:00", "weekday": "mon"}
    j = parse_journey(ed("nodes.2.if", conds, "nodes.0", wait), "t.yaml")
    assert j.nodes[2].when[3] == PropCondition("props.amount", "in", frozenset({100, 200}))
    assert (j.nodes[0].until_min, j.nodes[0].weekday) == (540, "mon")
    assert j.nodes[2].when[5] == QuietCondition(14 * 86_400_000, frozenset({"order_paid", "order_created"}))
    assert parse_journey(to_canonical(j), "<redis>") == j


def test_entry_conditions_round_trip_and_leave_other_fingerprints_alone():
    base = load_journey(JOURNEYS / "cart_abandoned.yaml")
    assert "if" not in to_canonical(base)["entry"]
    data = to_canonical(base)
    data["entry"]["if"] = [{"quiet_for": "7d"}, {"tag": "vip"}]
    j = parse_journey(data, "t.yaml")
    assert j.entry_if == (QuietCondition(7 * 86_400_000), TagCondition("vip"))
    assert parse_journey(to_canonical(j), "<redis>") == j and j != base


def test_nesting_up_to_the_limit_is_fine():
    j = parse_journey(ed("nodes", [nested(MAX_DEPTH)]), "t.yaml")
    assert len(list(walk(j))) == MAX_DEPTH


BAD = [
    (ed("nodes.1.chanel", "sms", "nodes.1.channel", DROP), "nodes[1]", "unknown keys ['chanel']"),
    (ed("nodes.2.then.0.channel", "fax"), "nodes[2].then[0].channel", "'fax' is not one of sms"),
    (ed("nodes.1.template", DROP), "nodes[1]", "missing required keys ['template']"),
    (ed("descripton", "x"), "top level", "unknown keys ['descripton']"),
    (ed("trigger", DROP), "top level", "missing required keys ['trigger']"),
    (ed("id", "New-User"), "id", "must match"),
    (ed("priority", "10"), "priority", "must be an integer from 0 to 100, got '10'"),
    (ed("priority", 101), "priority", "from 0 to 100"),
    (ed("max_active", True), "max_active", "must be an integer"),
    (ed("nodes.0.duration", "1 hour"), "nodes[0].duration", "does not parse"),
    (ed("nodes.0.until", "09:00"), "nodes[0]", "needs exactly one of duration, until"),
    (ed("nodes.0.weekday", "mon"), "nodes[0].weekday", "only goes with until"),
    (ed("quiet_hours.start", "25:00"), "quiet_hours.start", "not a time of day"),
    (ed("quiet_hours.start", 1260), "quiet_hours.start", 'quoted "HH:MM"'),
    (ed("quiet_hours.end", "21:00"), "quiet_hours.end", "equals start"),
    (ed("quiet_hours.action", "skip"), "quiet_hours.action", "not one of defer, drop"),
    (ed("nodes", []), "nodes", "at least one node"),
    (ed("nodes", "send"), "nodes", "must be a list"),
    (ed("nodes.1", "send"), "nodes[1]", "must be a mapping"),
    (ed("nodes.1.type", "email"), "nodes[1].type", "'email' is not one of wait"),
    (ed("nodes.0.id", "x", "nodes.1.id", "x"), "nodes[1].id", "'x' is already used by nodes[0]"),
    (ed("nodes.0.id", "n2_then0"), "nodes[2].then[0]", "'n2_then0' is already used by nodes[0] (assigned"),
    (ed("nodes.0.id", "Wait-1"), "nodes[0].id", "must match"),
    (ed("nodes.4", {"type": "exit"}), "nodes[4]", "exit must be the last node"),
    (ed("nodes.2.then", [{"type": "exit"}, {"type": "exit"}]), "nodes[2].then[0]", "exit must be"),
    (ed("nodes", [nested(MAX_DEPTH + 1)]), "nodes[0]" + ".then[0]" * 7 + ".then", "deeper than 8"),
    (ed("trigger", {"absence": {"after": "a", "missing": "a", "within": "1h"}}),
     "trigger.absence.missing", "must differ"),
    (ed("trigger", {"absence": {"after": "a", "missing": "b", "within": "soon"}}),
     "trigger.absence.within", "does not parse"),
    (ed("trigger.tag", {"added": "x"}), "trigger", "needs exactly one of event, absence"),
    (ed("trigger", {}), "trigger", "it has none"),
    (ed("entry.if", [{"prop": "type", "op": "==", "value": "x"}]), "entry.if[0]", "not the trigger's props"),
    (ed("entry.if", [{"quiet_for": "a while"}]), "entry.if[0].quiet_for", "does not parse"),
    (ed("entry.if", [{"quiet_for": "1d", "types": ["Order Paid"]}]), "entry.if[0].types[0]", "an event type"),
    (ed("entry.if", {"quiet_for": "1d"}), "entry.if", "must be a list"),
    (ed("trigger", {"evnt": {"type": "signup"}}), "trigger", "unknown keys ['evnt']"),
    (ed("trigger.event.type", "Sign Up"), "trigger.event.type", "an event type"),
    (ed("trigger.event.where", [["amount", ">=", 1]]), "trigger.event.where[0]", "cannot exist"),
    (ed("trigger.event.where", [["props.a", ">=", "x"]]), "trigger.event.where[0]", "must be a number"),
    (ed("trigger.event.where", [["props.a", "in", [[1]]]]), "trigger.event.where[0]", "must be a string"),
    (ed("trigger.event.where", [["props.a", ">="]]), "trigger.event.where[0]", "[field, op, value]"),
    (ed("trigger.event.where", [["props.a", "in", []]]), "trigger.event.where[0]", "non-empty list"),
    (ed("trigger", {"score": {"model": "churn", "threshold": "t", "direction": "sideways"}}),
     "trigger.score.direction", "not one of up, down"),
    (ed("trigger", {"date": {"field": "props.birthday", "format": "MM-DD", "offset": "-1h"}}),
     "trigger.date.offset", "whole number of days"),
    (ed("trigger", {"date": {"field": "props.birthday", "format": "DD/MM"}}),
     "trigger.date.format", "not one of MM-DD, YYYY-MM-DD"),
    (ed("caps.0.count", 0), "caps[0].count", "integer >= 1"),
    (ed("caps.0.per", "daily"), "caps[0].per", "does not parse"),
    (ed("caps.0.channel", "fax"), "caps[0].channel", "not one of sms"),
    (ed("entry", {"policy": "once_per"}), "entry", "once_per needs days"),
    (ed("entry", {"policy": "once_per", "days": 0}), "entry.days", "from 1 to 3650"),
    (ed("entry.days", 3), "entry.days", "only once_per takes days"),
    (ed("entry.policy", "always"), "entry.policy", "not one of once, every_time, once_per"),
    (ed("nodes.1.template", "Welcome!"), "nodes[1].template", "must match"),
    (ed("nodes.1.vars.count", 3), "nodes[1].vars.count", "must be a string (quote it)"),
    (ed("nodes.2.if", []), "nodes[2].if", "at least one condition"),
    (ed("nodes.2.if.1.op", "~"), "nodes[2].if[1].op", "unknown operator '~'"),
    (ed("nodes.2.if.1.op", "in"), "nodes[2].if[1].op", "unknown operator 'in'"),
    (ed("nodes.2.if.0", {"tag": "a", "segment": "b"}), "nodes[2].if[0]", "it has tag and segment"),
    (ed("nodes.2.if.0", {"score": "churn", "op": ">", "value": 1.5}),
     "nodes[2].if[0].value", "not a probability"),
    (ed("nodes.2.if.0", {"tag": "a", "op": ">"}), "nodes[2].if[0]", "unknown keys ['op']"),
    (ed("nodes.2.then", DROP), "nodes[2]", "missing required keys ['then']"),
    (ed("nodes.3.arms", BASE["nodes"][3]["arms"][:1]), "nodes[3].arms", "at least 2 arms"),
    (ed("nodes.3.arms.1.name", "a"), "nodes[3].arms[1].name", "duplicate arm name 'a'"),
    (ed("nodes.3.arms.0.weight", 0), "nodes[3].arms[0].weight", "integer >= 1"),
    (ed("nodes.3.arms.0.weight", 4.5), "nodes[3].arms[0].weight", "integer >= 1"),
    (ed("nodes.3.arms.0.then", []), "nodes[3].arms[0].then", "`holdout: true`"),
    (ed("nodes.3.arms.2.then", [{"type": "exit"}]), "nodes[3].arms[2].then", "sends nothing"),
    (ed("nodes.3.arms.1", {"name": "b", "weight": 1, "holdout": True}),
     "nodes[3].arms[2].holdout", "only one arm"),
    (ed("nodes.3.arms.2.holdout", "yes"), "nodes[3].arms[2].holdout", "true or false"),
    (ed("nodes.3.arms.0.then.0.remove", "x"), "nodes[3].arms[0].then[0]", "has add and remove"),
    (ed("nodes.3.arms.1.then.0.due", "-"), "nodes[3].arms[1].then[0].due", "duration"),
    (ed("nodes.4.priority", "urgent"), "nodes[4].priority", "not one of low, normal, high"),
    (ed("nodes.4.title", "  "), "nodes[4].title", "non-empty string"),
    ([1, 2], "top level", "must be a mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "path", "what"), BAD)
def test_a_bad_definition_is_refused_with_its_path(data: Any, path: str, what: str):
    msg = refused(data)
    assert msg.startswith(f"t.yaml: {path}: "), msg
    assert what in msg, msg


# --- files and folders -------------------------------------------------------------------------


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_and_json_of_one_definition_are_equal_with_one_fingerprint(tmp_path: Path):
    j = load_journey(JOURNEYS / "new_user_warmup.yaml")
    as_json = _write(tmp_path, "w.json", json.dumps(to_canonical(j), indent=2))
    k = load_journey(as_json)
    assert k == j and k.source == str(as_json) and fingerprint(k) == fingerprint(j)


def test_fingerprint_is_stable_and_follows_the_definition():
    j = load_journey(JOURNEYS / "new_user_warmup.yaml")
    assert fingerprint(j) == fingerprint(load_journey(JOURNEYS / "new_user_warmup.yaml"))
    assert fingerprint(dataclasses.replace(j, version=7, source="elsewhere")) == fingerprint(j)
    data = to_canonical(j)
    data["nodes"][2]["then"][0]["template"] = "vip_offer_v2"
    changed = parse_journey(data, "x")
    assert changed != j and fingerprint(changed) != fingerprint(j)
    data = to_canonical(j)
    data["nodes"][0]["duration"] = "2h"
    assert fingerprint(parse_journey(data, "x")) != fingerprint(j)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    bad = _write(tmp_path, "bad.yaml", "id: x\nname: X\npriority: 1: 2\nnodes: []\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}: line 3, column \d+: not valid YAML"):
        load_journey(bad)


def test_yaml_duplicate_key_is_refused_with_its_line(tmp_path: Path):
    text = (JOURNEYS / "new_user_warmup.yaml").read_text() + "priority: 99\n"
    lines = text.count("\n")
    bad = _write(tmp_path, "dup.yaml", text)
    with pytest.raises(ConfigError, match=rf"dup.yaml: line {lines}, column 1: .*duplicate key 'priority'"):
        load_journey(bad)


def test_unquoted_template_in_a_yaml_file_gets_a_hint(tmp_path: Path):
    text = (JOURNEYS / "new_user_warmup.yaml").read_text().replace('"{{profile.name}}"', "{{profile.name}}")
    line = text[: text.index("{{profile")].count("\n") + 1
    bad = _write(tmp_path, "v.yaml", text)
    with pytest.raises(
        ConfigError, match=rf"v.yaml: line {line}, column \d+: .*unhashable key \(quote a value"
    ):
        load_journey(bad)


def test_unquoted_time_in_a_yaml_file_gets_a_hint(tmp_path: Path):
    text = (JOURNEYS / "cart_abandoned.yaml").read_text().replace('"21:00"', "21:00")
    bad = _write(tmp_path, "c.yaml", text)
    with pytest.raises(ConfigError, match=r"c.yaml: quiet_hours.start: .*unquoted 21:00 as the number 1260"):
        load_journey(bad)


def test_json_errors_name_file_and_line(tmp_path: Path):
    bad = _write(tmp_path, "bad.json", '{\n  "id": "x",\n}\n')
    with pytest.raises(ConfigError, match=r"bad.json: line 2, column \d+: not valid JSON"):
        load_journey(bad)
    dup = _write(tmp_path, "dup.json", '{"id": "x", "id": "y"}')
    with pytest.raises(ConfigError, match=r"dup.json: JSON: key 'id' appears twice"):
        load_journey(dup)


def test_load_journey_refuses_missing_files_and_other_suffixes(tmp_path: Path):
    with pytest.raises(ConfigError, match="journey file not found"):
        load_journey(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not a journey file"):
        load_journey(_write(tmp_path, "j.toml", "id = 'x'"))
    with pytest.raises(ConfigError, match=r"empty.yaml: top level: must be a mapping"):
        load_journey(_write(tmp_path, "empty.yaml", "# nothing yet\n"))


def test_a_parse_error_in_a_file_names_the_file(tmp_path: Path):
    text = (JOURNEYS / "new_user_warmup.yaml").read_text().replace("channel: sms", "channel: fax")
    bad = _write(tmp_path, "w.yaml", text)
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(bad))}: nodes\[1\].channel: 'fax' is not one of"
    ):
        load_journey(bad)


def test_folder_refuses_an_id_defined_twice_naming_both_files(tmp_path: Path):
    text = (JOURNEYS / "new_user_warmup.yaml").read_text()
    first = _write(tmp_path, "a.yaml", text)
    second = _write(tmp_path, "b.json", json.dumps(to_canonical(load_journey(first))))
    with pytest.raises(ConfigError) as info:
        load_folder(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{second}: id: journey id 'new_user_warmup' is already defined in {first}")


def test_folder_is_all_or_nothing_and_ignores_other_files(tmp_path: Path):
    for src in JOURNEYS.iterdir():
        _write(tmp_path, src.name, src.read_text())
    _write(tmp_path, "README.md", "# not a journey")
    _write(tmp_path, ".draft.yaml", "not: [valid")
    (tmp_path / "archive").mkdir()
    _write(tmp_path / "archive", "old.yaml", "not: [valid")
    assert [j.id for j in load_folder(tmp_path)] == ["cart_abandoned", "churn_winback", "new_user_warmup"]
    bad = _write(tmp_path, "zz_bad.yml", "id: zz\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}: top level: missing required keys"):
        load_folder(tmp_path)
    bad.unlink()
    _write(tmp_path, "aa_bad.yaml", "id: [\n")
    with pytest.raises(ConfigError, match=r"aa_bad\.yaml: line"):
        load_folder(tmp_path)


def test_missing_folder_is_an_error_and_an_empty_one_is_no_journeys(tmp_path: Path):
    with pytest.raises(ConfigError, match="journeys folder not found"):
        load_folder(tmp_path / "nope")
    assert load_folder(tmp_path) == ()


def test_journey_is_frozen_and_hashable():
    j = parse_journey(BASE, "t.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.priority = 1  # type: ignore[misc]
    assert hash(j) == hash(parse_journey(BASE, "other.yaml"))
    assert isinstance(j, Journey)
