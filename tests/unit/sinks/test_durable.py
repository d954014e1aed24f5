"""FlushOnSnapshot: every Bytewax snapshot flushes the wrapped sink's buffer first."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main

from sinks.durable import FlushOnSnapshot


class Recorder:
    """A buffered partition of our own: rows become 'written' only on flush or close."""

    log: ClassVar[list[tuple[str, object]]] = []

    def __init__(self) -> None:
        self.buffer: list[object] = []

    def write_batch(self, items: list[object]) -> None:
        self.buffer.extend(items)

    def flush(self) -> None:
        Recorder.log.append(("flush", list(self.buffer)))
        self.buffer.clear()

    def close(self) -> None:
        Recorder.log.append(("close", list(self.buffer)))


class RecorderSink(DynamicSink[object]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> Recorder:  # type: ignore[override]
        return Recorder()


def test_snapshots_flush_the_buffer_with_recovery_on(tmp_path):
    Recorder.log = []
    init_db_dir(tmp_path, 1)
    flow = Dataflow("durable")
    items = op.input("in", flow, TestingSource(list(range(50)), batch_size=5))
    keyed = op.key_on("key", items, str)
    op.output("out", keyed, FlushOnSnapshot(RecorderSink(), "rec"))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
    flushes = [rows for kind, rows in Recorder.log if kind == "flush"]
    assert len(flushes) >= 2, "a flush at every epoch's snapshot"
    written = [r for _, rows in Recorder.log for r in rows]
    assert sorted(written) == list(range(50)), "every row written exactly once"


def test_with_recovery_on_every_buffered_or_unacknowledged_sink_flushes_at_snapshots(tmp_path):
    """The Kafka sinks (dead letters, actions) return before the broker acknowledges, like
    the buffered ClickHouse and Redis sinks: with recovery on each is flushed at every
    snapshot, so no epoch is committed over a message still in flight."""
    from flows.app.engine import make_sinks
    from flows.core.settings import load_settings
    from sinks.kafka import KafkaTopicSink

    s = load_settings(
        env={},
        overrides={
            "source": {"kind": "kafka"},
            "recovery": {"dir": str(tmp_path)},
            "engine": {"data_dir": str(tmp_path)},
        },
    )
    sinks = make_sinks(s)
    kafka = [
        sink
        for group in (sinks.dead_letters, sinks.actions_out)
        for sink in group
        if isinstance(sink, FlushOnSnapshot) and isinstance(sink.inner, KafkaTopicSink)
    ]
    assert len(kafka) == 2
    everything = [sink for group in vars(sinks).values() for sink in group]
    assert not [x for x in everything if isinstance(x, KafkaTopicSink)], "none left unwrapped"


def test_the_dataflow_sends_a_durable_sink_its_messages_as_plain_tuples_and_it_gets_them_back(tmp_path):
    """`build._outputs` keys what goes to a `FlushOnSnapshot` as `flows.core.wire` sends it
    across processes; the wrapped sink is written the messages themselves."""
    from flows.core.contract import Event
    from flows.core.messages import Score
    from flows.dataflow.build import _outputs, _profile_key

    Recorder.log = []
    init_db_dir(tmp_path, 1)
    sent: list[object] = [
        Event("e1", "p1", "order_paid", 1_700_000_000_000, "web", {"amount": 3.5}, {}, {}, 0, "bench", 0, 7),
        Score("churn", "p2", "p2", 0.25, 3, 1_700_000_000_000, (("recency", 0.5),), 0),
    ]
    flow = Dataflow("wired")
    _outputs(
        "rows",
        op.input("in", flow, TestingSource(sent)),
        [FlushOnSnapshot(RecorderSink(), "rec")],
        _profile_key,
    )
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
    written = [r for _, rows in Recorder.log for r in rows]
    assert written == sent
    assert [type(r) for r in written] == [Event, Score]
