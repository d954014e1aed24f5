"""Kafka output with delivery callbacks: acknowledged, retried, or a loud failure.

Bytewax's stock KafkaSink ignores delivery errors; this one does not. `write_batch`
hands messages to librdkafka and returns at once (the worker does not wait a broker round
trip per batch); `flush()` waits until every message was acknowledged, re-producing any
that failed, and raises `SinkError` when the retries are spent. With recovery on the sink
is wrapped in `FlushOnSnapshot`, so Bytewax calls `flush()` before each epoch can be
committed: a snapshot never advances past a message that was not acknowledged. A
failure reported between flushes is retried at the next `write_batch`, and `close()`
flushes: nothing is dropped silently. An optional `acked` hook is told which items the
broker acknowledged (at the next `write_batch` or `flush`), so the actions sink can
record its deliveries (`rules.actions.DeliveryMarks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from flows.core import metrics
from flows.core.contract import DeadLetter
from flows.core.errors import SinkError
from flows.core.settings import KafkaSettings
from sinks.retry import RetryPolicy

log = logging.getLogger("scrm.kafka")

Headers = list[tuple[str, str | bytes | None]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OutMessage:
    key: bytes | None
    value: bytes
    headers: Headers


def producer_config(settings: KafkaSettings) -> dict[str, object]:
    """librdkafka settings for an idempotent, acknowledged producer."""
    conf: dict[str, object] = {
        "bootstrap.servers": settings.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
    }
    conf.update(settings.extra)
    return conf


def ensure_topics(settings: KafkaSettings, topics: dict[str, int], timeout_s: float = 15.0) -> list[str]:
    """Create missing topics ({name: partitions}); returns the ones created."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap, **settings.extra})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(name, num_partitions=parts, replication_factor=1)
        for name, parts in topics.items()
        if name not in existing
    ]
    created: list[str] = []
    if not wanted:
        return created
    for name, fut in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            fut.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def dead_letter_message(d: DeadLetter) -> OutMessage:
    """A dead letter on the DLQ topic: the raw bytes as value, the reason in headers."""
    headers: Headers = [
        ("reason", d.reason.encode()),
        ("detail", d.detail.encode()[:1024]),
        ("origin", d.origin.encode()),
        ("partition", str(d.partition).encode()),
        ("offset", str(d.offset).encode()),
        ("raw_size", str(d.raw_size).encode()),
    ]
    return OutMessage(d.key, d.raw, headers)


def json_message(key: str, payload: dict[str, object]) -> OutMessage:
    return OutMessage(key.encode(), orjson.dumps(payload), [])


class KafkaTopicSink(DynamicSink[T]):
    """Produces items to one topic; at-least-once, every message acknowledged by `flush()`."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        encode: Callable[[T], OutMessage],
        retry: RetryPolicy,
        acked: Callable[[list[T]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._encode = encode
        self._retry = retry
        self._on_acked = acked

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition[T]:
        return _KafkaPartition(
            Producer(producer_config(self._settings)),
            self._topic,
            self._encode,
            self._retry,
            self._settings.delivery_timeout_s,
            self._on_acked,
        )


class _KafkaPartition(StatelessSinkPartition[T]):
    def __init__(
        self,
        producer: Producer,
        topic: str,
        encode: Callable[[T], OutMessage],
        retry: RetryPolicy,
        timeout_s: float,
        acked: Callable[[list[T]], None] | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._encode = encode
        self._retry = retry
        self._timeout_s = timeout_s
        self._sink = f"kafka:{topic}"
        self._rows = metrics.SINK_ROWS.labels(sink=self._sink)
        # (item, message, error, attempts so far) reported by delivery callbacks, not yet re-sent
        self._failed: list[tuple[T, OutMessage, object, int]] = []
        self._on_acked = acked
        self._acked: list[T] = []  # items acknowledged, not yet reported (only with a hook)

    def write_batch(self, items: list[T]) -> None:
        self._producer.poll(0)  # serve the delivery callbacks of earlier batches
        if self._failed:
            self._resend()
        self._report_acked()
        self._produce([(item, self._encode(item)) for item in items], 1)

    def flush(self) -> None:
        """Return once every message handed over so far was acknowledged (or raise)."""
        while True:
            while self._producer.flush(self._timeout_s):
                # Still queued after the timeout: each one's callback fires as a failure
                # (message.timeout.ms) or a success, never silently; wait for them.
                continue
            if not self._failed:
                self._report_acked()
                return
            self._resend()

    def _report_acked(self) -> None:
        if self._acked and self._on_acked is not None:
            acked, self._acked = self._acked, []
            self._on_acked(acked)

    def close(self) -> None:
        self.flush()

    def _resend(self) -> None:
        """Re-produce the failed messages after a backoff, or raise once their attempts are spent."""
        failed, self._failed = self._failed, []
        metrics.SINK_RETRIES.labels(sink=self._sink).inc()
        attempt = max(n for _, _, _, n in failed)
        errors = sorted({str(err) for _, _, err, _ in failed})
        if attempt >= self._retry.attempts:
            msg = (
                f"{len(failed)} messages to {self._topic} not delivered after "
                f"{attempt} attempts: {'; '.join(errors)[:500]}"
            )
            log.error(msg)
            raise SinkError(msg)
        pause = self._retry.delay(attempt)
        log.warning(
            "%d messages to %s not delivered (attempt %d/%d): %s; retrying in %.2fs",
            len(failed),
            self._topic,
            attempt,
            self._retry.attempts,
            errors[0],
            pause,
        )
        time.sleep(pause)
        for item, m, _, n in failed:
            self._produce([(item, m)], n + 1)

    def _produce(self, messages: list[tuple[T, OutMessage]], attempt: int) -> None:
        def on_delivery(item: T, msg_ref: OutMessage) -> Callable[[KafkaError | None, Message], None]:
            def _cb(err: KafkaError | None, _msg: Message) -> None:
                if err is None:
                    self._rows.inc()
                    if self._on_acked is not None:
                        self._acked.append(item)
                else:
                    self._failed.append((item, msg_ref, err, attempt))

            return _cb

        for item, m in messages:
            while True:
                try:
                    self._producer.produce(
                        self._topic, m.value, m.key, headers=m.headers, on_delivery=on_delivery(item, m)
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    self._failed.append((item, m, exc, attempt))
                    break
