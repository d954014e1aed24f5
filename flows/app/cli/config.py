"""`scrm config`: the effective settings."""

from __future__ import annotations

import sys

import orjson

from flows.app.cli.common import ConfigOpt, settings_or_exit

__all__ = ["show_config"]


def show_config(config: ConfigOpt = None) -> None:
    """Print the effective settings (all layers applied, secrets masked) as JSON."""
    settings = settings_or_exit(config)
    sys.stdout.buffer.write(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2) + b"\n")
