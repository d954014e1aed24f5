"""The shape every Redis store sink shares: items buffered (bounded), turned into one
hash write per key, and written as one pipeline per flush.

A store says what its items write (`HashStoreSink.writes`); this module does the rest:
the bounded buffer flushed by size or age and at every snapshot, the pipeline, retries
with backoff while Redis is unreachable (then ``SinkError``: the run fails loudly), and
the sink metrics. Delivery: at-least-once and idempotent (a replay writes the same values).

By default a flush is written by a child process (`sinks.writer_process`): the worker's
flush thread only pickles the items, and the hash writes, their packing and the round
trips run off the worker's GIL. ``writer="thread"`` writes in the flush thread itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from itertools import chain
from typing import Any, Generic, Literal, NamedTuple, TypeVar, cast

import hiredis
import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.core import metrics
from sinks.batching import BatchBuffer
from sinks.redis_store import REDIS_ERRORS, connect_checked
from sinks.retry import RetryPolicy
from sinks.writer_process import WriterProcess

T = TypeVar("T")


class HashWrite(NamedTuple):
    """What one flush does to one hash: set fields (numbers and text apart: a flush's
    numbers are formatted together), delete fields, refresh the TTL."""

    key: str
    numbers: Mapping[str, float | int]
    text: Mapping[str, str] = {}
    removed: tuple[str, ...] = ()
    expire: bool = True

    @property
    def fields(self) -> dict[str, str | float | int]:
        return {**self.numbers, **self.text}


class HashStoreSink(DynamicSink[T], Generic[T]):
    """Base of the Redis store sinks; subclasses set `name` (the metrics label) and `what`
    (how errors name the store) and implement `writes`."""

    name = "redis"
    what = "Redis"
    item: Callable[..., T]  # the items' NamedTuple: a writer process gets them as plain tuples

    def __init__(
        self, url: str, ttl_s: int, timeout_s: float, retry: RetryPolicy,
        flush_interval_s: float = 0.1, flush_rows: int = 5000, max_rows: int = 100_000,
        writer: Literal["process", "thread"] = "process",
    ) -> None:  # fmt: skip
        self.url = url
        self.ttl_ms = ttl_s * 1000
        self.timeout_s = timeout_s
        self.retry = retry
        self.flush = (flush_rows, flush_interval_s, max_rows)
        self.writer = writer

    def writes(self, items: list[T]) -> list[HashWrite]:
        """The hash writes of a flush's items (later items win field by field)."""
        raise NotImplementedError

    def written(self, items: list[T]) -> None:
        """Count what a flush wrote in the store's own metrics (none by default)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _HashStorePartition[T]:
        client = connect_checked(self.url, self.timeout_s, self.retry, self.what)  # fails loudly here
        if self.writer == "thread":
            return _HashStorePartition(self, _Writes(self, client))
        client.close()
        return _HashStorePartition(self, WriterProcess(f"{self.name}-{worker_index}", _Writes(self)))


class _Writes(Generic[T]):
    """A flush's items written to Redis: the store's hash writes, packed and sent in one
    pipeline, retried while Redis is unreachable. Runs in the flush thread or, pickled
    without its client, in a writer process (which connects at its first flush)."""

    def __init__(self, sink: HashStoreSink[T], client: redis.Redis | None = None) -> None:
        self._sink = sink
        self._client = client
        self._tuples = False  # items arrive as plain tuples (in a writer process)

    def __getstate__(self) -> HashStoreSink[T]:
        return self._sink

    def __setstate__(self, sink: HashStoreSink[T]) -> None:
        # Unpickled only in a writer process, whose items come down the pipe as plain
        # tuples (half the pickling of NamedTuples, which pickle through a Python call each).
        self._sink = sink
        self._client = None
        self._tuples = True

    def __call__(self, items: list[Any]) -> tuple[int, int]:
        """(profiles written, retries made)."""
        sink = self._sink
        if self._tuples:
            make = sink.item
            items = [make(*t) for t in items]
        if self._client is None:
            self._client = connect_checked(sink.url, sink.timeout_s, sink.retry, sink.what)
        client = self._client
        writes = sink.writes(items)
        send: Callable[[], None]
        if isinstance(client, redis.RedisCluster):  # keys on several nodes: redis-py routes them
            send = partial(_cluster_pipeline, client, writes, sink.ttl_ms)
        else:
            send = partial(_pipeline, client, _pack(writes, sink.ttl_ms))
        retries = 0

        def _once() -> None:
            nonlocal retries
            try:
                send()
            except redis.RedisError:
                retries += 1
                raise

        sink.retry.call(_once, f"write {len(writes)} profiles to {sink.what}", retry_on=REDIS_ERRORS)
        return len(writes), retries

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _HashStorePartition(StatelessSinkPartition[T]):
    def __init__(self, sink: HashStoreSink[T], writes: _Writes[T] | WriterProcess[tuple[Any, ...]]) -> None:
        self._sink = sink
        self._writes = writes
        self._rows = metrics.SINK_ROWS.labels(sink=sink.name)
        self._seconds = metrics.SINK_WRITE_SECONDS.labels(sink=sink.name)
        self._retries = metrics.SINK_RETRIES.labels(sink=sink.name)
        rows, interval, max_rows = sink.flush
        self._buffer: BatchBuffer[T] = BatchBuffer(sink.name, self._write, rows, interval, max_rows)

    def write_batch(self, items: list[T]) -> None:
        self._buffer.add(items)

    def flush(self) -> None:
        """Write everything buffered now (a Bytewax snapshot waits for this)."""
        self._buffer.flush()

    def _write(self, items: list[T]) -> None:
        started = time.perf_counter()
        w = self._writes
        if isinstance(w, _Writes):
            rows, retries = w(items)
        else:  # NamedTuples travel as plain tuples
            rows, retries = w.write([tuple(x) for x in cast(list[tuple[Any, ...]], items)])
        if retries:
            self._retries.inc(retries)
        self._seconds.observe(time.perf_counter() - started)
        self._rows.inc(rows)
        self._sink.written(items)

    def close(self) -> None:
        try:
            self._buffer.close()
        finally:
            self._writes.close()


def _pack(writes: list[HashWrite], ttl_ms: int) -> list[bytes]:
    """The flush's commands in wire format, packed in C by hiredis (redis-py's own packing
    encodes every argument in Python: it was most of this sink's time under the GIL).

    Every number of the flush is formatted in one ``orjson.dumps`` (shortest round trip,
    as ``repr``: "3", "129.5"; ~0.1 µs a number where ``repr`` inside hiredis took ~0.5,
    the largest share of this sink's time); a non-finite one falls back to ``repr``."""
    pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command  # (its stub says a 1-tuple)
    numbers = _numbers(writes)
    out = []
    at = 0
    for w in writes:
        n = len(w.numbers)
        fields = chain(zip(w.numbers, numbers[at : at + n], strict=True), w.text.items())
        out.append(pack(("HSET", w.key, *chain.from_iterable(fields))))
        at += n
        if w.removed:
            out.append(pack(("HDEL", w.key, *w.removed)))
        if w.expire:
            out.append(pack(("PEXPIRE", w.key, ttl_ms)))
    return out


def _numbers(writes: list[HashWrite]) -> list[bytes]:
    """The decimal text of every write's numbers, in order."""
    values = [v for w in writes for v in w.numbers.values()]
    if not values:
        return []
    blob = orjson.dumps(values)
    if b"null" in blob:  # orjson writes NaN and infinities as null: those as repr does
        return [repr(v).encode() for v in values]
    return blob[1:-1].split(b",")


def _cluster_pipeline(client: redis.RedisCluster, writes: list[HashWrite], ttl_ms: int) -> None:
    pipe = client.pipeline()
    for w in writes:
        pipe.hset(w.key, mapping=w.fields)
        if w.removed:
            pipe.hdel(w.key, *w.removed)
        if w.expire:
            pipe.pexpire(w.key, ttl_ms)
    pipe.execute()


def _pipeline(client: redis.Redis, packed: list[bytes]) -> None:
    """Send `packed` commands in one write and read every reply; a failed command raises
    after all replies are read (the connection stays in step), a broken connection is
    dropped."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join(packed)])
        error: redis.ResponseError | None = None
        for _ in packed:
            try:
                conn.read_response()
            except redis.ResponseError as e:
                error = error or e
        if error is not None:
            raise error
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
