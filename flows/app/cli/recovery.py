"""`scrm recovery ...`: the Bytewax recovery partitions."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.app.cli.common import ConfigOpt, err, out, settings_or_exit
from flows.core.errors import ScrmError

__all__ = ["app"]

app = typer.Typer(help="Bytewax recovery partitions (snapshots of the engine's state).")


@app.command("init")
def recovery_init(
    config: ConfigOpt = None,
    partitions: Annotated[int, typer.Option(help="Recovery partitions to create.")] = 1,
) -> None:
    """Create the recovery partitions in recovery.dir (once, before the first run)."""
    from flows.app.engine import init_recovery

    settings = settings_or_exit(config)
    try:
        path = init_recovery(settings, partitions)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"created {partitions} recovery partition(s) in {path}")
