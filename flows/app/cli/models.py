"""`scrm models ...`: the declared online models and their published versions in Redis
(list, export to a file, import from one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.app.cli.common import ConfigOpt, err, out, redis_client, settings_or_exit
from flows.core.errors import ScrmError
from flows.core.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Online models: list, export and import trained versions.")


def _models(settings: Settings) -> Any:
    from flows.dataflow.build import feature_set, model_set

    models = model_set(settings, feature_set(settings))
    if models is None:
        err.print("[red]error:[/] no model is declared (or models/features are off)")
        raise typer.Exit(2)
    return models


@app.command("list")
def models_list(config: ConfigOpt = None) -> None:
    """The declared models and their latest published versions."""
    from scoring.transfer import describe

    settings = settings_or_exit(config)
    try:
        models = _models(settings)
        with redis_client(settings) as client:
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


@app.command("export")
def models_export(
    name: Annotated[str, typer.Argument(help="Model name (see `scrm models list`).")],
    file: Annotated[Path, typer.Argument(help="File to write.", dir_okay=False)],
    config: ConfigOpt = None,
) -> None:
    """Write the latest published version of a model to FILE."""
    from scoring.transfer import export_model

    settings = settings_or_exit(config)
    try:
        with redis_client(settings) as client:
            pm = export_model(client, name, file)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"exported {name} version {pm.version} ({pm.n_learned:,} examples learned) to {file}")


@app.command("import")
def models_import(
    name: Annotated[str, typer.Argument(help="Model name as declared here.")],
    file: Annotated[
        Path, typer.Argument(help="A file from `scrm models export`.", exists=True, dir_okay=False)
    ],
    config: ConfigOpt = None,
) -> None:
    """Publish an exported model here as the next version (checked against the declaration)."""
    from scoring.transfer import import_model

    settings = settings_or_exit(config)
    try:
        models = _models(settings)
        with redis_client(settings) as client:
            pm = import_model(client, name, file, models)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"imported {name} as version {pm.version} ({pm.n_learned:,} examples learned)")
