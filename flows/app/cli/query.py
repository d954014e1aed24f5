"""`scrm query` and `scrm report`: SQL and the analysts' reports against the engine's
ClickHouse, printed as a table, CSV or JSON."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from flows.app.cli.common import ConfigOpt, err, out, settings_or_exit
from flows.core.errors import ScrmError

__all__ = ["OutFormat", "query", "report"]


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def query(
    sql: Annotated[str, typer.Argument(help="A SELECT to run against the configured ClickHouse.")],
    config: ConfigOpt = None,
    fmt: Annotated[OutFormat, typer.Option("--format", "-f", help="Output format.")] = OutFormat.table,
) -> None:
    """Run one query against the engine's ClickHouse (with chDB: while the engine is stopped)."""
    from sinks.clickhouse import connect

    settings = settings_or_exit(config)
    try:
        client = connect(settings.clickhouse)
        result = client.query(sql)
    except Exception as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    _print_rows(list(result.column_names), list(result.result_rows), fmt)


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
    by_person: Annotated[
        bool,
        typer.Option(
            "--by-person",
            help="Count persons, not profile ids: each event counts for the person its profile belongs "
            "to now (identity.resolve links and merges them).",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Run an analysts' report from sql/reports/ against the configured ClickHouse (with
    chDB: while the engine is stopped)."""
    from flows.app.reports import reports, run_report
    from sinks.clickhouse import connect

    settings = settings_or_exit(config)
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
        names, rows = run_report(client, available[name], settings.clickhouse.database, given, by_person)
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
