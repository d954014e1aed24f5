"""ClickHouse: the client (chDB in-process or a server by URL), the DDL, and the table sink.

One code path for both backends: clickhouse-connect's client API, reached through
``chdb://PATH`` (the ClickHouse engine in-process) or ``http(s)://host:port``. Table
definitions live only in ``sql/``; nothing here creates a table except by running them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlparse

import clickhouse_connect
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from clickhouse_connect.driver.client import Client

from flows.resources import sql_dir
from flows.settings import ClickHouseSettings, redact_url
from sinks import metrics
from sinks.batching import BatchBuffer
from sinks.retry import RetryPolicy

T = TypeVar("T")
log = logging.getLogger("scrm.clickhouse")


def chdb_path(url: str, base: Path | None = None) -> Path:
    """The data path of a ``chdb://`` URL, made absolute (relative to `base` or the cwd)."""
    raw = url[len("chdb://") :]
    path = Path(raw)
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path.resolve()


def connect(settings: ClickHouseSettings, retry: RetryPolicy | None = None) -> Client:
    """Open a client and check it answers; retried with backoff while the server is down."""
    policy = retry or RetryPolicy()

    def _open() -> Client:
        if settings.url.startswith("chdb://"):
            path = chdb_path(settings.url)
            path.mkdir(parents=True, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        else:
            u = urlparse(settings.url)
            client = clickhouse_connect.get_client(
                host=u.hostname or "localhost",
                port=u.port or (8443 if u.scheme == "https" else 8123),
                username=u.username or settings.username,
                password=u.password or settings.password.get_secret_value(),
                secure=u.scheme == "https",
                connect_timeout=settings.timeout_s,
                send_receive_timeout=settings.timeout_s,
            )
        client.command("SELECT 1")
        return client

    return policy.call(_open, f"connect to ClickHouse {redact_url(settings.url)}")


def ddl_statements(database: str, folder: Path | None = None) -> list[tuple[str, str]]:
    """(file name, statement) for every statement of ``sql/NNN_*.sql``, in file order.

    The files name the database ``{database}``; it is substituted here (default ``scrm``).
    """
    folder = folder or sql_dir()
    out: list[tuple[str, str]] = []
    for path in sorted(folder.glob("[0-9][0-9][0-9]_*.sql")):
        text = path.read_text(encoding="utf-8").replace("{database}", database)
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
        for stmt in "\n".join(lines).split(";"):
            if stmt.strip():
                out.append((path.name, stmt.strip()))
    return out


def apply_ddl(client: Client, database: str) -> list[str]:
    """Create the database and tables (idempotent). Returns the files applied."""
    applied: list[str] = []
    for name, stmt in ddl_statements(database):
        try:
            client.command(stmt)
        except Exception as exc:
            raise RuntimeError(f"{name}: {exc}") from exc
        if name not in applied:
            applied.append(name)
    return applied


def table_counts(client: Client, database: str) -> dict[str, int]:
    """Rows per table of `database` (deduplicated with FINAL where the engine replaces)."""
    rows = client.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": database},
    ).result_rows
    counts: dict[str, int] = {}
    for name, engine in rows:
        if "View" in engine:
            continue
        final = " FINAL" if "Replacing" in engine else ""
        counts[name] = int(client.command(f"SELECT count() FROM `{database}`.`{name}`{final}"))
    return counts


@dataclass(frozen=True)
class TableSpec(Generic[T]):
    """How items become the columns of one table."""

    table: str
    columns: tuple[str, ...]
    to_columns: Callable[[Sequence[T]], list[list[Any]]]
    # (received ms, event ms) of an item, for the latency histograms; None = not recorded
    times: Callable[[T], tuple[int, int]] | None = None


class ClickHouseSink(DynamicSink[T]):
    """Writes items to one ClickHouse table in batches (size or age, whichever first).

    Delivery: at-least-once. Each worker buffers rows (bounded: writers wait when it is
    full), writes one column-oriented insert per batch with retries and backoff, and fails
    the dataflow loudly when the retries are spent. Replays are made harmless by the
    tables' ReplacingMergeTree keys (query with ``FINAL`` for exact counts).
    """

    def __init__(self, settings: ClickHouseSettings, spec: TableSpec[T], retry: RetryPolicy):
        self._settings = settings
        self._spec = spec
        self._retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ClickHousePartition[T]:
        client = connect(self._settings, self._retry)
        return _ClickHousePartition(client, self._settings, self._spec, self._retry)


class _ClickHousePartition(StatelessSinkPartition[T]):
    def __init__(
        self, client: Client, settings: ClickHouseSettings, spec: TableSpec[T], retry: RetryPolicy
    ) -> None:
        self._client = client
        self._spec = spec
        self._retry = retry
        self._target = f"{settings.database}.{spec.table}"
        self._sink = f"clickhouse:{spec.table}"
        self._buffer: BatchBuffer[T] = BatchBuffer(
            self._sink,
            self._write,
            settings.flush_rows,
            settings.flush_interval_s,
            settings.max_buffer_rows,
        )

    def write_batch(self, items: list[T]) -> None:
        self._buffer.add(items)

    def flush(self) -> None:
        """Write everything buffered now (a Bytewax snapshot waits for this)."""
        self._buffer.flush()

    def close(self) -> None:
        try:
            self._buffer.close()
        finally:
            self._client.close()

    def _write(self, batch: list[T]) -> None:
        columns = self._spec.to_columns(batch)
        started = time.perf_counter()

        def _insert() -> None:
            try:
                self._client.insert(
                    self._target,
                    columns,
                    column_names=list(self._spec.columns),
                    column_oriented=True,
                )
            except Exception:
                metrics.SINK_RETRIES.labels(sink=self._sink).inc()
                raise

        self._retry.call(_insert, f"insert {len(batch)} rows into {self._target}")
        now = time.time()
        metrics.SINK_WRITE_SECONDS.labels(sink=self._sink).observe(time.perf_counter() - started)
        metrics.SINK_ROWS.labels(sink=self._sink).inc(len(batch))
        metrics.SINK_BATCH_ROWS.labels(sink=self._sink).observe(len(batch))
        if self._spec.times is not None:
            received_ms, _ = self._spec.times(batch[0])
            _, event_ms = self._spec.times(batch[-1])
            metrics.INGEST_TO_SINK.labels(sink=self._sink).observe(max(0.0, now - received_ms / 1000))
            metrics.EVENT_TO_SINK.labels(sink=self._sink).observe(max(0.0, now - event_ms / 1000))
