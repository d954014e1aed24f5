"""`scrm run`, `scrm init` and `scrm produce`: run the engine, create its ClickHouse
tables, send events to its Kafka topic."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.app.cli.common import ConfigOpt, err, out, settings_or_exit, setup_logging
from flows.core.errors import ScrmError
from flows.core.settings import redact_url

__all__ = ["SourceKind", "init", "produce", "run"]


class SourceKind(StrEnum):
    synthetic = "synthetic"
    kafka = "kafka"
    file = "file"


def run(
    config: ConfigOpt = None,
    source: Annotated[
        SourceKind | None, typer.Option(help="Where events come from (default: synthetic).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="JSONL or CSV file to replay (implies --source file).", dir_okay=False),
    ] = None,
    max_events: Annotated[
        int | None, typer.Option(help="Stop after this many input records, flush, exit 0.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds, flush, exit 0.")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Events/s for the synthetic and file sources (0 = as fast as possible; "
            "default: synthetic 2,000/s, a file at full speed)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="Bytewax workers in this process.")
    ] = None,
    process_id: Annotated[
        int | None, typer.Option("--process-id", "-i", help="This process's index in a cluster.")
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option("--addresses", "-a", help="All cluster processes, 'host:port;host:port'."),
    ] = None,
) -> None:
    """Run the engine until interrupted (Ctrl-C flushes every sink), or bounded.

    Shows live progress and ends with a summary: records by status and reason, rate,
    rows per ClickHouse table, where the data is and how to query it.
    """
    from flows.app import engine

    overrides: dict[str, Any] = {
        "source": {
            "kind": (SourceKind.file.value if file and source is None else source and source.value),
            "file": str(file) if file else None,
            "max_events": max_events,
            "duration_s": duration,
            "rate": rate,
        },
        "engine": {"workers": workers},
    }
    settings = settings_or_exit(config, overrides)
    setup_logging(settings.engine.log_level)
    cluster = engine.Cluster(process_id, tuple(a for a in (addresses or "").split(";") if a))
    try:
        engine.run(settings, err, cluster)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


def init(config: ConfigOpt = None) -> None:
    """Create the ClickHouse database and tables from sql/ (ordered files, idempotent)."""
    from flows.app.engine import prepare_clickhouse

    settings = settings_or_exit(config)
    setup_logging(settings.engine.log_level)
    try:
        applied = prepare_clickhouse(settings)
    except (ScrmError, RuntimeError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(
        f"applied {len(applied)} files to {redact_url(settings.clickhouse.url)} "
        f"database {settings.clickhouse.database}: {', '.join(applied)}",
        highlight=False,
    )


def produce(
    config: ConfigOpt = None,
    file: Annotated[
        Path | None,
        typer.Option(help="JSONL file, one event per line.", exists=True, dir_okay=False),
    ] = None,
    synthetic: Annotated[
        int | None, typer.Option(help="Send this many synthetic events instead of a file.")
    ] = None,
    rate: Annotated[float, typer.Option(help="Messages/s (0 = as fast as possible).")] = 0.0,
    topic: Annotated[str | None, typer.Option(help="Topic (default: kafka.events_topic).")] = None,
) -> None:
    """Send events to the Kafka events topic, keyed by profileId."""
    from flows.app import produce as producing

    if (file is None) == (synthetic is None):
        err.print("[red]error:[/] give exactly one of --file PATH or --synthetic N")
        raise typer.Exit(2)
    settings = settings_or_exit(config)
    setup_logging(settings.engine.log_level)
    records = (
        producing.file_records(file)
        if file is not None
        else producing.synthetic_records(settings, synthetic or 0)
    )

    def _progress(r: producing.ProduceResult) -> None:
        err.print(
            f"sent {r.sent:,} · delivered {r.delivered:,} · failed {r.failed:,} "
            f"· {r.sent / max(r.elapsed_s, 1e-9):,.0f} msg/s",
            highlight=False,
        )

    try:
        result = producing.produce(settings, records, rate, topic, _progress)
    except Exception as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(
        f"sent {result.sent:,} to {topic or settings.kafka.events_topic} in {result.elapsed_s:.1f}s "
        f"({result.sent / max(result.elapsed_s, 1e-9):,.0f} msg/s): delivered {result.delivered:,}, "
        f"failed {result.failed:,}" + (f" (first error: {result.first_error})" if result.failed else ""),
        highlight=False,
    )
    if result.failed or result.delivered != result.sent:
        raise typer.Exit(1)
