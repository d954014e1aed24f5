"""The `scrm` command: every subcommand explains itself; bad settings are clear errors."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from flows.app.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ([], "run"),
        (["run"], "--max-events"),
        (["init"], "sql/"),
        (["produce"], "--synthetic"),
        (["query"], "SELECT"),
        (["config"], "secrets masked"),
        (["recovery", "init"], "--partitions"),
        (["models", "list"], "published versions"),
        (["models", "export"], "FILE"),
        (["models", "import"], "declaration"),
    ],
)
def test_help_on_every_subcommand(args, expect):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert expect in result.output


def test_config_prints_layers_and_masks_secrets():
    result = runner.invoke(app, ["config"], env={"SCRM_PII__SECRET": "hush", "SCRM_KAFKA__BOOTSTRAP": "b:1"})
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["kafka"]["bootstrap"] == "b:1"
    assert data["pii"]["secret"] == "**********"
    assert "hush" not in result.output


def test_bad_environment_is_refused_with_the_setting_named():
    result = runner.invoke(app, ["config"], env={"SCRM_CLICKHOUSE__FLUSH_ROWS": "many"})
    assert result.exit_code == 2
    assert "clickhouse.flush_rows" in result.output


def test_produce_needs_exactly_one_input():
    result = runner.invoke(app, ["produce"])
    assert result.exit_code == 2
    assert "exactly one of --file PATH or --synthetic N" in result.output
