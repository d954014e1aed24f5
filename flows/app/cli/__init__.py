"""The `scrm` command: run the engine, create the tables, produce events, query, inspect.

Every subcommand takes ``--config FILE``; settings come from ``config/default.toml``,
that file, ``SCRM_*`` environment variables and the flags, later winning.

This module builds the root command from the modules beside it: ``run`` (run, init,
produce), ``query`` (query, report), ``config`` and the groups ``recovery``, ``models``,
``journeys`` and ``profile``; ``common`` holds what they share.
"""

from __future__ import annotations

import typer

from flows.app.cli import config, journeys, models, profile, query, recovery, run

__all__ = ["app"]

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
# `scrm --help` lists the commands in this order, then the groups
app.command()(run.run)
app.command()(run.init)
app.command()(run.produce)
app.command()(query.query)
app.command("report")(query.report)
app.command("config")(config.show_config)
app.add_typer(recovery.app, name="recovery")
app.add_typer(models.app, name="models")
app.add_typer(journeys.app, name="journeys")
app.add_typer(profile.app, name="profile")
