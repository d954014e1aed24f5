"""`scrm journeys ...`: journey files (validate, load into Redis as new versions) and the
journeys in Redis (list, show, enable, disable, pause, resume)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from flows.app.cli.common import ConfigOpt, err, out, redis_client, settings_or_exit
from flows.core.errors import ScrmError
from flows.core.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Journeys: validate files, load them into Redis (versioned), switch them.")


def _journey_dir(settings: Settings, path: Path | None) -> Path:
    from flows.core.resources import config_dir

    return path or settings.journeys.dir or config_dir() / "journeys"


def _load_journeys(path: Path) -> Any:
    from rules.journeys.load import load_folder, load_journey

    return (load_journey(path),) if path.is_file() else load_folder(path)


JourneyPath = Annotated[
    Path | None,
    typer.Argument(help="A journey file or a folder of them (default: journeys.dir, else config/journeys)."),
]


@app.command("validate")
def journeys_validate(path: JourneyPath = None, config: ConfigOpt = None) -> None:
    """Check journey files without loading them; a bad one is named with the path inside it."""
    settings = settings_or_exit(config)
    folder = _journey_dir(settings, path)
    try:
        journeys = _load_journeys(folder)
    except ScrmError as exc:
        err.print(f"[red]invalid:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    for j in journeys:
        out.print(f"ok  {j.id}  ({j.source})", highlight=False)


@app.command("load")
def journeys_load(path: JourneyPath = None, config: ConfigOpt = None) -> None:
    """Validate every file, then publish them all to Redis (nothing partial); a changed
    journey gets a new version, running engines pick it up within seconds."""
    from rules import store

    settings = settings_or_exit(config)
    try:
        journeys = _load_journeys(_journey_dir(settings, path))
        with redis_client(settings) as client:
            done = store.load(client, journeys)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    for j, what in done:
        out.print(f"{what:<9} {j.id} v{j.version}", highlight=False)


@app.command("list")
def journeys_list(config: ConfigOpt = None) -> None:
    """The journeys in Redis: current version, state, where they were loaded from."""
    from rules import store

    settings = settings_or_exit(config)
    with redis_client(settings) as client:
        rows = store.describe(store.index(client))
    table = Table("journey", "version", "state", "loaded from", "updated (UTC)", show_edge=False)
    for r in rows:
        table.add_row(r["journey"], str(r["version"]), r["state"], r["source"], r["updated"])
    out.print(table)


@app.command("show")
def journeys_show(
    journey_id: Annotated[str, typer.Argument(help="Journey id.")],
    version: Annotated[int | None, typer.Option(help="A past version (default: current).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print a journey's definition as stored (canonical JSON)."""
    from rules import store
    from rules.journeys.canonical import to_canonical

    settings = settings_or_exit(config)
    try:
        with redis_client(settings) as client:
            j = store.read(client, journey_id, version)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    sys.stdout.buffer.write(
        orjson.dumps({"version": j.version, **to_canonical(j)}, option=orjson.OPT_INDENT_2) + b"\n"
    )


def _switch(journey_id: str, state: str, config: Path | None) -> None:
    from rules import store

    settings = settings_or_exit(config)
    try:
        with redis_client(settings) as client:
            e = store.set_state(client, journey_id, state)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"{e.journey_id} v{e.version} is {e.state}", highlight=False)


JourneyId = Annotated[str, typer.Argument(help="Journey id (see `scrm journeys list`).")]


@app.command("enable")
def journeys_enable(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """Let new profiles enter and running instances go on."""
    _switch(journey_id, "enabled", config)


@app.command("disable")
def journeys_disable(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """No new entries; running instances exit at their next step."""
    _switch(journey_id, "disabled", config)


@app.command("pause")
def journeys_pause(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """No new entries; running instances hold where they are until resumed."""
    _switch(journey_id, "paused", config)


@app.command("resume")
def journeys_resume(journey_id: JourneyId, config: ConfigOpt = None) -> None:
    """Undo a pause (also one made by the complaint breaker)."""
    _switch(journey_id, "enabled", config)
