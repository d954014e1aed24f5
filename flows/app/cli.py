"""The `scrm` command: run the engine, create the tables, produce events, query, inspect.

Every subcommand takes ``--config FILE``; settings come from ``config/default.toml``,
that file, ``SCRM_*`` environment variables and the flags, later winning.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from flows.core.errors import ScrmError
from flows.core.settings import Settings, load_settings, redact_url

app = typer.Typer(
    name="scrm",
    help=(
        "scrm-stream: the real-time engine of a social CRM. Customer events in (Kafka, file "
        "replay or a synthetic generator), validated, deduplicated and stored in ClickHouse; "
        "bad input in the dead letters with a reason; windowed features in Redis; churn and "
        "win scores from River models that learn from the stream. Defaults need no set-up: an "
        "embedded Valkey and ClickHouse in-process (chDB) under .scrm/."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
recovery_app = typer.Typer(help="Bytewax recovery partitions (snapshots of the engine's state).")
app.add_typer(recovery_app, name="recovery")
models_app = typer.Typer(help="Online models: list, export and import trained versions.")
app.add_typer(models_app, name="models")
journeys_app = typer.Typer(help="Journeys: validate files, load them into Redis (versioned), switch them.")
app.add_typer(journeys_app, name="journeys")

err = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Settings file (TOML) layered over config/default.toml.",
        exists=True,
        dir_okay=False,
    ),
]


class SourceKind(StrEnum):
    synthetic = "synthetic"
    kafka = "kafka"
    file = "file"


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _settings(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
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
        typer.Option(help="Events/s for the synthetic and file sources (0 = as fast as possible)."),
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
    settings = _settings(config, overrides)
    _logging(settings.engine.log_level)
    cluster = engine.Cluster(process_id, tuple(a for a in (addresses or "").split(";") if a))
    try:
        engine.run(settings, err, cluster)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def init(config: ConfigOpt = None) -> None:
    """Create the ClickHouse database and tables from sql/ (ordered files, idempotent)."""
    from flows.app.engine import prepare_clickhouse

    settings = _settings(config)
    _logging(settings.engine.log_level)
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


@app.command()
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
    settings = _settings(config)
    _logging(settings.engine.log_level)
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


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="A SELECT to run against the configured ClickHouse.")],
    config: ConfigOpt = None,
    fmt: Annotated[OutFormat, typer.Option("--format", "-f", help="Output format.")] = OutFormat.table,
) -> None:
    """Run one query against the engine's ClickHouse (with chDB: while the engine is stopped)."""
    from sinks.clickhouse import connect

    settings = _settings(config)
    try:
        client = connect(settings.clickhouse)
        result = client.query(sql)
    except Exception as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    _print_rows(list(result.column_names), list(result.result_rows), fmt)


@app.command("report")
def report(
    name: Annotated[str | None, typer.Argument(help="Report name (see --list).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value, repeatable; arrays as comma-separated items."),
    ] = None,
    fmt: Annotated[OutFormat, typer.Option("--format", "-f", help="Output format.")] = OutFormat.table,
    list_: Annotated[
        bool, typer.Option("--list", help="List the reports, what they answer, their parameters.")
    ] = False,
    chart: Annotated[
        Path | None,
        typer.Option(
            "--chart",
            help="Also draw the report as a PNG (funnel bars, retention heatmap, ...).",
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run an analysts' report from sql/reports/ against the configured ClickHouse (with
    chDB: while the engine is stopped)."""
    from flows.app.reports import reports, run_report
    from sinks.clickhouse import connect

    settings = _settings(config)
    available = reports()
    if list_ or name is None:
        table = Table("report", "answers", "parameters (defaults)", show_edge=False)
        for r in available.values():
            table.add_row(r.name, r.answers, "\n".join(f"{p.name} {p.type} = {p.default}" for p in r.params))
        out.print(table)
        return
    if name not in available:
        err.print(f"[red]error:[/] no report {name!r}; `scrm report --list` shows them", highlight=False)
        raise typer.Exit(2)
    given: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]error:[/] --param {item!r} is not key=value", highlight=False)
            raise typer.Exit(2)
        given[key.strip()] = value
    try:
        client = connect(settings.clickhouse)
        names, rows = run_report(client, available[name], settings.clickhouse.database, given)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    _print_rows(names, rows, fmt)
    if chart is not None:
        from flows.app.charts import render

        kind = available[name].chart
        if not kind:
            err.print(f"[red]error:[/] report {name!r} has no chart", highlight=False)
            raise typer.Exit(2)
        render(kind, f"{name}: {available[name].answers}", names, rows, chart)
        err.print(f"chart: {chart}", highlight=False)


def _print_rows(names: list[str], rows: list[Any], fmt: OutFormat) -> None:
    if fmt is OutFormat.json:
        sys.stdout.buffer.write(
            orjson.dumps([dict(zip(names, r, strict=True)) for r in rows], default=str) + b"\n"
        )
    elif fmt is OutFormat.csv:
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(names)
        w.writerows(rows)
    else:
        table = Table(*names, show_edge=False)
        for r in rows:
            table.add_row(*(str(v) for v in r))
        out.print(table)


@app.command("config")
def show_config(config: ConfigOpt = None) -> None:
    """Print the effective settings (all layers applied, secrets masked) as JSON."""
    settings = _settings(config)
    sys.stdout.buffer.write(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2) + b"\n")


@recovery_app.command("init")
def recovery_init(
    config: ConfigOpt = None,
    partitions: Annotated[int, typer.Option(help="Recovery partitions to create.")] = 1,
) -> None:
    """Create the recovery partitions in recovery.dir (once, before the first run)."""
    from flows.app.engine import init_recovery

    settings = _settings(config)
    try:
        path = init_recovery(settings, partitions)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"created {partitions} recovery partition(s) in {path}")


@contextmanager
def _redis_client(settings: Settings) -> Iterator[Any]:
    """A client on the configured Redis; with the embedded one, its server is started on the
    data directory for the command (run it while the engine is stopped)."""
    from flows.app.engine import retry_policy
    from sinks.redis_store import RedisService

    service = RedisService(settings.redis, settings.engine.data_dir.resolve(), retry_policy(settings))
    service.start()
    client = service.client()
    try:
        yield client
    finally:
        client.close()
        service.stop()


def _models(settings: Settings) -> Any:
    from flows.dataflow.build import feature_set, model_set

    models = model_set(settings, feature_set(settings))
    if models is None:
        err.print("[red]error:[/] no model is declared (or models/features are off)")
        raise typer.Exit(2)
    return models


@models_app.command("list")
def models_list(config: ConfigOpt = None) -> None:
    """The declared models and their latest published versions."""
    from scoring.transfer import describe

    settings = _settings(config)
    try:
        models = _models(settings)
        with _redis_client(settings) as client:
            rows = describe(client, models)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    table = Table(
        "model", "entity", "version", "learned", "published (UTC)", "matches declaration", show_edge=False
    )
    for r in rows:
        table.add_row(r["model"], r["entity"], str(r["version"]), f"{r['n_learned']:,}", r["published"],
                      {True: "yes", False: "NO", None: "-"}[r["matches_declaration"]])  # fmt: skip
    out.print(table)


@models_app.command("export")
def models_export(
    name: Annotated[str, typer.Argument(help="Model name (see `scrm models list`).")],
    file: Annotated[Path, typer.Argument(help="File to write.", dir_okay=False)],
    config: ConfigOpt = None,
) -> None:
    """Write the latest published version of a model to FILE."""
    from scoring.transfer import export_model

    settings = _settings(config)
    try:
        with _redis_client(settings) as client:
            pm = export_model(client, name, file)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"exported {name} version {pm.version} ({pm.n_learned:,} examples learned) to {file}")


@models_app.command("import")
def models_import(
    name: Annotated[str, typer.Argument(help="Model name as declared here.")],
    file: Annotated[
        Path, typer.Argument(help="A file from `scrm models export`.", exists=True, dir_okay=False)
    ],
    config: ConfigOpt = None,
) -> None:
    """Publish an exported model here as the next version (checked against the declaration)."""
    from scoring.transfer import import_model

    settings = _settings(config)
    try:
        models = _models(settings)
        with _redis_client(settings) as client:
            pm = import_model(client, name, file, models)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"imported {name} as version {pm.version} ({pm.n_learned:,} examples learned)")


def _journey_dir(settings: Settings, path: Path | None) -> Path:
    from flows.core.resources import config_dir

    return path or settings.journeys.dir or config_dir() / "journeys"


def _load_journeys(path: Path) -> Any:
    from rules.journeys import load_folder, load_journey

    return (load_journey(path),) if path.is_file() else load_folder(path)


JourneyPath = Annotated[
    Path | None,
    typer.Argument(help="A journey file or a folder of them (default: journeys.dir, else config/journeys)."),
]


@journeys_app.command("validate")
def journeys_validate(path: JourneyPath = None, config: ConfigOpt = None) -> None:
    """Check journey files without loading them; a bad one is named with the path inside it."""
    settings = _settings(config)
    folder = _journey_dir(settings, path)
    try:
        journeys = _load_journeys(folder)
    except ScrmError as exc:
        err.print(f"[red]invalid:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    for j in journeys:
        out.print(f"ok  {j.id}  ({j.source})", highlight=False)


@journeys_app.command("load")
def journeys_load(path: JourneyPath = None, config: ConfigOpt = None) -> None:
    """Validate every file, then publish them all to Redis (nothing partial); a changed
    journey gets a new version, running engines pick it up within seconds."""
    from rules import store

    settings = _settings(config)
    try:
        journeys = _load_journeys(_journey_dir(settings, path))
        with _redis_client(settings) as client:
            done = store.load(client, journeys)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    for j, what in done:
        out.print(f"{what:<9} {j.id} v{j.version}", highlight=False)


@journeys_app.command("list")
def journeys_list(config: ConfigOpt = None) -> None:
    """The journeys in Redis: current version, state, where they were loaded from."""
    from rules import store

    settings = _settings(config)
    with _redis_client(settings) as client:
        rows = store.describe(store.index(client))
    table = Table("journey", "version", "state", "loaded from", "updated (UTC)", show_edge=False)
    for r in rows:
        table.add_row(r["journey"], str(r["version"]), r["state"], r["source"], r["updated"])
    out.print(table)


@journeys_app.command("show")
def journeys_show(
    journey_id: Annotated[str, typer.Argument(help="Journey id.")],
    version: Annotated[int | None, typer.Option(help="A past version (default: current).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print a journey's definition as stored (canonical JSON)."""
    from rules import store
    from rules.journeys import to_canonical

    settings = _settings(config)
    try:
        with _redis_client(settings) as client:
            j = store.read(client, journey_id, version)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    sys.stdout.buffer.write(
        orjson.dumps({"version": j.version, **to_canonical(j)}, option=orjson.OPT_INDENT_2) + b"\n"
    )


def _switch(journey_id: str, state: str, config: Path | None) -> None:
    from rules import store

    settings = _settings(config)
    try:
        with _redis_client(settings) as client:
            e = store.set_state(client, journey_id, state)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"{e.journey_id} v{e.version} is {e.state}", highlight=False)


JourneyId = Annotated[str, typer.Argument(help="Journey id (see `scrm journeys list`).")]


@journeys_app.command("enable")
def journeys_enable(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """Let new profiles enter and running instances go on."""
    _switch(journey_id, "enabled", config)


@journeys_app.command("disable")
def journeys_disable(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """No new entries; running instances exit at their next step."""
    _switch(journey_id, "disabled", config)


@journeys_app.command("pause")
def journeys_pause(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """No new entries; running instances hold where they are until resumed."""
    _switch(journey_id, "paused", config)


@journeys_app.command("resume")
def journeys_resume(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """Undo a pause (also one made by the complaint breaker)."""
    _switch(journey_id, "enabled", config)


if __name__ == "__main__":  # pragma: no cover
    app()
