"""The dataflow with TestingSource/TestingSink, on one worker and on two."""

from __future__ import annotations

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.core import metrics
from flows.core.contract import RawRecord
from flows.dataflow.build import FlowSinks, build_flow
from flows.sources.control import RunControl
from flows.sources.files import FileSource


def user(events: list) -> list:
    """The input's own events (the engine adds tag_added/tag_removed events of its own)."""
    return [e for e in events if e.source != "engine"]


def _run(flow, workers: int) -> None:
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request) -> int:
    return request.param


def rec(obj: object, offset: int) -> RawRecord:
    return RawRecord(orjson.dumps(obj), "test", 0, offset, None, 1_700_000_000_000)


def ev(eid: str, pid: str, ts: int = 1_700_000_000) -> dict[str, object]:
    return {"eventId": eid, "profileId": pid, "type": "page_view", "ts": ts}


def test_accepts_dedupes_and_dead_letters(make_settings, workers):
    inputs = [
        rec(ev("e1", "p1"), 0),
        rec(ev("e2", "p2"), 1),
        rec(ev("e1", "p1"), 2),  # repeat: dropped
        RawRecord(b"{oops", "test", 0, 3),
        rec({"eventId": "e3", "profileId": "p3", "type": "x"}, 4),  # no ts
        rec(ev("e4", "p1", 1_700_000_100), 5),
        rec(ev("e2", "p2"), 6),  # repeat: dropped
    ]
    events, dead = [], []
    dup_before = metrics.value("scrm_events_duplicate_total")
    flow = build_flow(
        make_settings(),
        TestingSource(inputs, batch_size=3),
        FlowSinks(events=[TestingSink(events)], dead_letters=[TestingSink(dead)]),
    )
    _run(flow, workers)
    assert sorted(e.event_id for e in user(events)) == ["e1", "e2", "e4"]
    assert sorted((d.reason, d.offset) for d in dead) == [
        ("invalid_json", 3),
        ("missing_field:ts", 4),
    ]
    assert metrics.value("scrm_events_duplicate_total") - dup_before == 2


def test_identifiers_are_normalised_in_the_default_region_and_refusals_counted(make_settings, workers):
    def one(eid: str, ids: dict[str, str]) -> dict[str, object]:
        return {"eventId": eid, "type": "signup", "ts": 1_700_000_000, "identifiers": ids}

    inputs = [
        rec(one("e1", {"phone": "(650) 253-0000"}), 0),
        rec(one("e2", {"phone": "+1 650 253 0000", "email": "nobody"}), 1),
        rec(one("e3", {"phone": "12"}), 2),  # nothing identifies it: dead-lettered
    ]
    labels = {"kind": "email", "reason": "malformed"}
    before = metrics.value("scrm_identifiers_invalid_total", labels)
    events, dead = [], []
    flow = build_flow(
        make_settings({"identity": {"default_region": "US"}}),
        TestingSource(inputs, batch_size=2),
        FlowSinks(events=[TestingSink(events)], dead_letters=[TestingSink(dead)]),
    )
    _run(flow, workers)
    got = {e.event_id: e for e in user(events)}
    assert got["e1"].profile_id == got["e2"].profile_id  # one number, however written
    assert set(got["e2"].pii_hashes) == {"phone"}
    assert [(d.reason, d.offset) for d in dead] == [("invalid_identifiers", 2)]
    assert metrics.value("scrm_identifiers_invalid_total", labels) - before == 1


def test_same_event_id_on_different_profiles_is_not_a_duplicate(make_settings, workers):
    events: list = []
    flow = build_flow(
        make_settings(),
        TestingSource([rec(ev("e1", "p1"), 0), rec(ev("e1", "p2"), 1)]),
        FlowSinks(events=[TestingSink(events)]),
    )
    _run(flow, workers)
    assert sorted(e.profile_id for e in user(events)) == ["p1", "p2"]


def test_file_replay_jsonl_and_csv(make_settings, tmp_path, workers):
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_bytes(
        b"\n".join(orjson.dumps(ev(f"j{i}", f"p{i % 3}")) for i in range(5)) + b"\n\nnot json\n"
    )
    csv_file = tmp_path / "events.csv"
    csv_file.write_text(
        "event_id,profile_id,type,ts,props.amount,props.sku\n"
        "c1,p1,order_paid,2023-11-14T22:13:20Z,12.5,A1\n"
        "c2,p2,order_paid,1700000000,,\n"
        "c3,,order_paid,1700000000,1,B\n"
    )
    settings = make_settings({"source": {"rate": 0}})
    events, dead = [], []
    for path in (jsonl, csv_file):
        flow = build_flow(
            settings,
            FileSource(path, settings.source.csv, 0, RunControl()),
            FlowSinks(events=[TestingSink(events)], dead_letters=[TestingSink(dead)]),
        )
        _run(flow, workers)
    by_id = {e.event_id: e for e in user(events)}
    assert sorted(by_id) == ["c1", "c2", "j0", "j1", "j2", "j3", "j4"]
    assert by_id["c1"].props == {"amount": 12.5, "sku": "A1"} and by_id["c2"].props == {}
    assert by_id["c1"].ts_ms == 1_700_000_000_000
    assert sorted(d.reason for d in dead) == ["invalid_json", "missing_field:profileId"]
    assert {d.origin for d in dead} == {f"file:{jsonl.resolve()}", f"file:{csv_file.resolve()}"}


def test_bounded_run_stops_at_max_records(make_settings, tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(ev(f"e{i}", "p")) for i in range(500)))
    settings = make_settings()
    events: list = []
    control = RunControl(max_records=120)
    flow = build_flow(
        settings,
        FileSource(path, settings.source.csv, 0, control),
        FlowSinks(events=[TestingSink(events)]),
    )
    run_main(flow)
    assert len(user(events)) == 120


def test_with_features_off_only_the_input_events_come_out(make_settings, workers):
    events: list = []
    flow = build_flow(
        make_settings({"features": {"enabled": False}}),
        TestingSource([rec(ev("e1", "p1"), 0), rec(ev("e1", "p1"), 1), rec(ev("e2", "p2"), 2)]),
        FlowSinks(events=[TestingSink(events)], features=[TestingSink([])]),
    )
    _run(flow, workers)
    assert sorted(e.event_id for e in events) == ["e1", "e2"]


def test_engine_events_do_not_depend_on_batching(make_settings):
    """A tag change is stamped with the event that caused it, not with the last event of
    whatever batch it came in: the engine's own events, and their ids, are the same however
    the input is batched (a replay after a crash batches it differently)."""
    t = 1_790_000_000_000

    def order(eid: str, ts: int, amount: float) -> dict[str, object]:
        props = {"amount": amount}
        return {"eventId": eid, "profileId": "p1", "type": "order_paid", "ts": ts, "props": props}

    evs = [
        {"eventId": "s", "profileId": "p1", "type": "signup", "ts": t},
        order("o1", t + 60_000, 1500),
        order("o2", t + 120_000, 600),  # revenue_90d reaches 2,000 (`high_value`) mid-batch
        order("o3", t + 180_000, 100),
    ]

    def engine_events(batch_size: int) -> list[tuple[str, int]]:
        out: list = []
        flow = build_flow(
            make_settings({"models": {"enabled": False}}),
            TestingSource([rec(e, i) for i, e in enumerate(evs)], batch_size=batch_size),
            FlowSinks(events=[TestingSink(out)], features=[TestingSink([])]),
        )
        run_main(flow)
        tags = [e for e in out if e.source == "engine" and e.type.startswith("tag_")]
        return sorted((e.event_id, e.ts_ms) for e in tags)

    one_by_one, all_at_once = engine_events(1), engine_events(10)
    assert (f"tag_added:high_value:p1:{t + 120_000}", t + 120_000) in one_by_one
    assert all_at_once == one_by_one
