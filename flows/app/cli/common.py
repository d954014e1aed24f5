"""What every `scrm` command shares: the consoles, the ``--config`` option, loading the
settings (a bad setting exits 2), logging, and a Redis client for the commands that
read or write the engine's Redis."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flows.core.errors import ScrmError
from flows.core.settings import Settings, load_settings

__all__ = ["ConfigOpt", "err", "out", "redis_client", "settings_or_exit", "setup_logging"]

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


def settings_or_exit(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """The layered settings; an invalid one is printed and the command exits 2."""
    try:
        return load_settings(config, overrides=overrides)
    except ScrmError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def redis_client(settings: Settings) -> Iterator[Any]:
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
