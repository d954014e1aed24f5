"""ClickHouse: the client (chDB in-process or a server by URL), the DDL, and the table sink.

One code path for both backends: clickhouse-connect's client API, reached through
``chdb://PATH`` (the ClickHouse engine in-process) or ``http(s)://host:port``. Table
definitions live only in ``sql/``; nothing here creates a table except by running them.
"""

from __future__ import annotations

import hashlib
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
from clickhouse_connect.driver.insert import InsertContext

from flows.core import metrics
from flows.core.resources import sql_dir
from flows.core.settings import ClickHouseSettings, redact_url
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


MIGRATIONS = "schema_migrations"


def apply_ddl(client: Client, database: str) -> list[str]:
    """Bring `database` to the schema in ``sql/``; returns every file of the schema, in order.

    Versioned: each file is applied once and recorded with a checksum of its text in
    ``{database}.schema_migrations``; a later change is a new, higher-numbered file, and
    an applied file whose text changed since is refused (it would mean a database that
    differs from the files). Every file is also idempotent, so a database created before
    the record existed is brought up to date by applying them again.
    """
    folder = sql_dir()
    files: dict[str, list[str]] = {}
    for name, stmt in ddl_statements(database, folder):
        files.setdefault(name, []).append(stmt)
    recorded: dict[str, str] | None = None
    for name, stmts in files.items():
        checksum = hashlib.sha256((folder / name).read_bytes()).hexdigest()[:16]
        if recorded is None and not name.startswith("001_"):
            recorded = _migrations(client, database)
        if recorded is not None and name in recorded:
            if recorded[name] != checksum:
                raise RuntimeError(
                    f"{name}: changed since it was applied to {database} (checksum {recorded[name]}, now "
                    f"{checksum}); put schema changes in a new, higher-numbered file"
                )
            continue
        for stmt in stmts:
            try:
                client.command(stmt)
            except Exception as exc:
                raise RuntimeError(f"{name}: {exc}") from exc
        if recorded is not None:
            client.insert(f"{database}.{MIGRATIONS}", [[name, checksum]], column_names=["file", "checksum"])
            log.info("schema: applied %s to %s", name, database)
    return list(files)


def _migrations(client: Client, database: str) -> dict[str, str]:
    client.command(
        f"CREATE TABLE IF NOT EXISTS `{database}`.{MIGRATIONS} (file String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY file"
    )
    rows = client.query(
        f"SELECT file, argMax(checksum, applied_at) FROM `{database}`.{MIGRATIONS} GROUP BY file"
    )
    return {file: checksum for file, checksum in rows.result_rows}


def table_counts(client: Client, database: str) -> dict[str, int]:
    """Rows per table of `database` (deduplicated with FINAL where the engine replaces).
    Views and the daily views' aggregate stores (their row counts mean nothing) are left out."""
    rows = client.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": database},
    ).result_rows
    counts: dict[str, int] = {}
    for name, engine in rows:
        if "View" in engine or "Aggregating" in engine or name == MIGRATIONS:
            continue
        final = " FINAL" if "Replacing" in engine else ""
        counts[name] = int(str(client.command(f"SELECT count() FROM `{database}`.`{name}`{final}")))
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
        self._context: InsertContext | None = None  # made at the first insert, then reused
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
                # One insert context per partition, reused: made per insert, it asked the
                # server for the table's columns (DESCRIBE TABLE) at every flush, and each
                # held its columns in a reference cycle until a collection found it.
                if self._context is None:
                    self._context = self._client.create_insert_context(
                        self._target, list(self._spec.columns), column_oriented=True
                    )
                self._client.insert(data=columns, context=self._context)
            except Exception:
                self._context = None  # the next attempt asks for the columns again
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
