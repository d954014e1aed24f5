"""Events from a real Kafka-protocol broker to chDB, dead letters to a real DLQ topic."""

from __future__ import annotations

import io
from collections import Counter

import orjson
import pytest
from rich.console import Console

from flows.app import engine
from flows.app.engine import init_recovery

NOW_S = 1_790_000_000  # fixed event times well inside the accepted range
USER = "origin != 'engine'"  # the input's events, not the engine's own tag changes


def event(i: int, profile: int, **extra: object) -> bytes:
    body = {
        "eventId": f"e{i}",
        "profileId": f"p{profile}",
        "type": "page_view",
        "ts": NOW_S + i,
        "source": "web",
    }
    body.update(extra)
    return orjson.dumps(body)


MALFORMED: list[tuple[bytes, str]] = [
    (b"{not json", "invalid_json"),
    (orjson.dumps({"eventId": "m1", "profileId": "p1", "type": "page_view"}), "missing_field:ts"),
    (
        orjson.dumps({"eventId": "m2", "profileId": "p1", "type": "Page View", "ts": NOW_S}),
        "bad_value:type",
    ),
    (
        orjson.dumps({"eventId": "m3", "profileId": "p1", "type": "x", "ts": NOW_S, "props": "a=1"}),
        "bad_type:props",
    ),
    (
        orjson.dumps({"eventId": "m4", "profileId": "p1", "type": "x", "ts": 10_413_792_000}),
        "ts_out_of_range",
    ),
    (b"[1,2,3]", "not_object"),
]


def run_engine(settings):
    out = io.StringIO()
    summary = engine.run(settings, Console(file=out, width=200))
    return summary, out.getvalue()


@pytest.mark.parametrize("workers", [1, 2])
def test_kafka_to_clickhouse_with_dead_letters_and_dedupe(broker, engine_settings, ch, names, workers):
    broker.create_topic(names["events"], partitions=2)
    good = [event(i, i % 30) for i in range(300)]
    pii = event(
        1000,
        7,
        identifiers={"phone": "13800000001", "email": "zhang@example.com"},
        props={"phone": "13900000002"},
    )
    dups = good[:20]
    messages = [(f"p{i % 30}".encode(), v) for i, v in enumerate(good)]
    messages += [(b"p7", pii)] + [(None, raw) for raw, _ in MALFORMED] + [(b"dup", v) for v in dups]
    broker.produce(names["events"], messages)

    summary, text = run_engine(engine_settings({"source": {"kind": "kafka"}, "engine": {"workers": workers}}))

    db = names["database"]
    assert summary.counts.records_in == len(messages)
    assert summary.counts.duplicate == 20
    # the rate's time runs from the first record read: within the run, not before it
    assert summary.flow_s is not None and 0 < summary.flow_s <= summary.elapsed_s
    assert f"{len(messages):,} records in {summary.flow_s:.1f}s" in text
    assert ch.command(f"SELECT count() FROM {db}.events WHERE {USER}") == 301  # nothing inserted twice
    assert ch.command(f"SELECT uniqExact(event_id) FROM {db}.events FINAL WHERE {USER}") == 301
    rows = ch.query(f"SELECT reason, raw FROM {db}.dead_letters FINAL").result_rows
    assert Counter(r for r, _ in rows) == Counter(r for _, r in MALFORMED)
    assert {bytes(raw) if isinstance(raw, bytes) else raw.encode() for _, raw in rows} == {
        m for m, _ in MALFORMED
    }

    dlq = broker.consume_all(names["dlq"])
    assert Counter(dict(m.headers())["reason"].decode() for m in dlq) == Counter(r for _, r in MALFORMED)
    assert {m.value() for m in dlq} == {m for m, _ in MALFORMED}

    masked = ch.query(
        f"SELECT identifiers, props, pii_hashes FROM {db}.events FINAL WHERE event_id = 'e1000'"
    ).result_rows[0]
    assert masked[0] == {"phone": "138****0001", "email": "z***@example.com"}
    assert orjson.loads(masked[1]) == {"phone": "139****0002"}
    assert set(masked[2]) == {"phone", "email", "props.phone"}
    leaks = ch.command(
        f"SELECT count() FROM {db}.events WHERE position(toString(identifiers), '13800000001') > 0 "
        f"OR position(props, '13900000002') > 0 OR position(toString(identifiers), 'zhang@') > 0"
    )
    assert leaks == 0
    assert "Input records by status" in text and "dead_letters" in text


def test_synthetic_bounded_run_accounts_for_every_record(engine_settings, ch, names):
    settings = engine_settings(
        {
            "source": {
                "kind": "synthetic",
                "max_events": 3000,
                "rate": 0,
                "synthetic": {"malformed_share": 0.02, "duplicate_share": 0.02},
            },
        }
    )
    summary, text = run_engine(settings)
    c = summary.counts
    db = names["database"]
    assert c.records_in == 3000
    events = ch.command(f"SELECT count() FROM {db}.events FINAL WHERE {USER}")
    dead = ch.command(f"SELECT count() FROM {db}.dead_letters FINAL")
    assert events + dead + c.duplicate == 3000
    assert dead == c.rejected_total > 0
    assert c.duplicate > 0
    assert summary.tables["dead_letters"] == dead
    assert summary.tables["events"] > events, "plus the engine's own tag_added/tag_removed events"
    assert summary.tables["features"] > 0
    assert "records/s" in text


def replay_with_recovery(engine_settings, tmp_path, lines: list[bytes]):
    """(settings, file): a file replay of `lines` with recovery in ``tmp_path/recovery``."""
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    settings = engine_settings(
        {
            "source": {"kind": "file", "file": str(path), "rate": 0},
            "recovery": {"dir": str(tmp_path / "recovery"), "snapshot_interval_s": 0.2},
        }
    )
    return settings, path


def test_dedupe_and_file_position_survive_a_restart(engine_settings, ch, names, tmp_path):
    settings, path = replay_with_recovery(engine_settings, tmp_path, [event(1, 1), event(2, 1)])
    init_recovery(settings, 1)
    first, _ = run_engine(settings)
    assert first.counts.records_in == 2
    with path.open("ab") as fh:  # the producer re-sends e1 and adds e3
        fh.write(event(1, 1) + b"\n" + event(3, 1) + b"\n")
    second, _ = run_engine(settings)
    db = names["database"]
    assert second.counts.records_in == 2, "the replay resumes after the snapshotted file position"
    assert second.counts.duplicate == 1, "the restored dedupe state knows e1"
    assert ch.command(f"SELECT count() FROM {db}.events WHERE {USER}") == 3


def test_recovery_dir_without_partitions_refuses_to_start(engine_settings, tmp_path):
    from flows.core.errors import ConfigError

    settings = engine_settings({"recovery": {"dir": str(tmp_path / "empty")}, "source": {"max_events": 1}})
    with pytest.raises(ConfigError, match="scrm recovery init"):
        run_engine(settings)


def test_an_incomplete_recovery_store_refuses_to_start(engine_settings, tmp_path):
    """A lost partition file must stop start-up with what to do, not resume from half the
    state (or from none of it) silently."""
    from flows.core.errors import ConfigError

    settings, _ = replay_with_recovery(engine_settings, tmp_path, [event(1, 1)])
    init_recovery(settings, 2)
    first, _ = run_engine(settings)
    assert first.counts.records_in == 1
    (tmp_path / "recovery" / "part-1.sqlite3").unlink()
    with pytest.raises(ConfigError, match=r"Missing recovery partitions .* of 2.*scrm recovery init"):
        run_engine(settings)


def test_a_bad_features_file_stops_start_up_with_file_and_entry(engine_settings, tmp_path):
    from flows.core.errors import ConfigError

    bad = tmp_path / "features.toml"
    bad.write_text('[[feature]]\nname = "orders_1w"\nagg = "count"\nwindow = "1 week"\n')
    settings = engine_settings({"features": {"file": str(bad)}, "source": {"max_events": 10}})
    with pytest.raises(ConfigError, match=r"features\.toml: feature\[0\] \(orders_1w\)\.window: duration"):
        run_engine(settings)
