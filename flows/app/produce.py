"""`scrm produce`: send events to the events topic, keyed by profileId, for producers and load tests.

Every message is acknowledged or counted as failed (delivery callbacks); the command
exits non-zero if any failed. Records whose profileId cannot be read are sent without
a key, so the engine can dead-letter them with a reason, as it would in production.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Producer

from flows.core.settings import Settings
from flows.sources.control import Pacer
from flows.sources.synthetic import synthetic_config
from flows.synthetic.customers import SyntheticCustomers
from sinks.kafka import ensure_topics, producer_config


@dataclass
class ProduceResult:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    first_error: str = ""
    elapsed_s: float = 0.0


def profile_key(value: bytes) -> bytes | None:
    """The profileId of a JSON event as the message key (None when unreadable).

    >>> profile_key(b'{"profileId":"p7","type":"x"}'), profile_key(b'oops')
    (b'p7', None)
    """
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    pid = obj.get("profileId") if isinstance(obj, dict) else None
    return pid.encode() if isinstance(pid, str) and pid else None


def file_records(path: Path) -> Iterator[bytes]:
    """Non-empty lines of a JSONL file."""
    with path.open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def synthetic_records(settings: Settings, count: int) -> Iterator[bytes]:
    """`count` synthetic events with event time = now (wall clock)."""
    gen = SyntheticCustomers(synthetic_config(settings.source.synthetic))
    for _ in range(count):
        yield gen.next_event(int(time.time() * 1000))


def produce(
    settings: Settings,
    records: Iterable[bytes],
    rate: float = 0.0,
    topic: str | None = None,
    on_progress: Callable[[ProduceResult], None] | None = None,
) -> ProduceResult:
    """Send `records` to `topic` (default: the events topic) at `rate` msg/s (0 = max)."""
    k = settings.kafka
    topic = topic or k.events_topic
    ensure_topics(k, {topic: k.partitions})
    producer = Producer(producer_config(k))
    result = ProduceResult()
    pacer = Pacer(rate)

    def on_delivery(err: object, _msg: object) -> None:
        if err is None:
            result.delivered += 1
        else:
            result.failed += 1
            result.first_error = result.first_error or str(err)

    started = time.monotonic()
    last_report = started
    it = iter(records)
    done = False
    while not done:
        allowed = pacer.allowance(10000)
        if allowed == 0:
            time.sleep(0.001)
            producer.poll(0)
            continue
        for _ in range(allowed):
            value = next(it, None)
            if value is None:
                done = True
                break
            while True:
                try:
                    producer.produce(topic, value, profile_key(value), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            result.sent += 1
        producer.poll(0)
        now = time.monotonic()
        if on_progress is not None and now - last_report >= 1.0:
            result.elapsed_s = now - started
            on_progress(result)
            last_report = now
    remaining = producer.flush(k.delivery_timeout_s)
    if remaining:
        producer.flush(k.delivery_timeout_s)
    result.elapsed_s = time.monotonic() - started
    return result
