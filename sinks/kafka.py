"""Kafka output with delivery callbacks: acknowledged, retried, or a loud failure.

Bytewax's stock KafkaSink ignores delivery errors; this one does not. `write_batch`
produces every message and returns only after the broker acknowledged all of them,
re-producing any that failed; when the retries are spent it raises `SinkError` and the
dataflow stops. Since an epoch closes only after its batches were written, a snapshot
never advances past a message that was not acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from flows.contract import DeadLetter
from flows.errors import SinkError
from flows.settings import KafkaSettings
from sinks import metrics
from sinks.retry import RetryPolicy

log = logging.getLogger("scrm.kafka")

Headers = list[tuple[str, bytes]]


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


class KafkaTopicSink(DynamicSink[object]):
    """Produces items to one topic; at-least-once, acknowledged before `write_batch` returns."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        encode: Callable[[object], OutMessage],
        retry: RetryPolicy,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._encode = encode
        self._retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        return _KafkaPartition(
            Producer(producer_config(self._settings)),
            self._topic,
            self._encode,
            self._retry,
            self._settings.delivery_timeout_s,
        )


class _KafkaPartition(StatelessSinkPartition[object]):
    def __init__(
        self,
        producer: Producer,
        topic: str,
        encode: Callable[[object], OutMessage],
        retry: RetryPolicy,
        timeout_s: float,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._encode = encode
        self._retry = retry
        self._timeout_s = timeout_s
        self._sink = f"kafka:{topic}"

    def write_batch(self, items: list[object]) -> None:
        pending = [self._encode(item) for item in items]
        for attempt in range(1, self._retry.attempts + 1):
            failed = self._send(pending)
            if not failed:
                metrics.SINK_ROWS.labels(sink=self._sink).inc(len(items))
                return
            metrics.SINK_RETRIES.labels(sink=self._sink).inc()
            errors = sorted({str(err) for _, err in failed})
            if attempt == self._retry.attempts:
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
            pending = [m for m, _ in failed]

    def _send(self, messages: list[OutMessage]) -> list[tuple[OutMessage, object]]:
        failed: list[tuple[OutMessage, object]] = []

        def on_delivery(msg_ref: OutMessage) -> Callable[[KafkaError | None, Message], None]:
            def _cb(err: KafkaError | None, _msg: Message) -> None:
                if err is not None:
                    failed.append((msg_ref, err))

            return _cb

        for m in messages:
            while True:
                try:
                    self._producer.produce(
                        self._topic, m.value, m.key, headers=m.headers, on_delivery=on_delivery(m)
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    failed.append((m, exc))
                    break
        remaining = self._producer.flush(self._timeout_s)
        if remaining:
            # Still queued after the timeout: flush again; their callbacks will fire as
            # failures (message.timeout.ms) or successes, never silently.
            self._producer.flush(self._timeout_s)
        return failed

    def close(self) -> None:
        self._producer.flush(self._timeout_s)
