"""``python -m flows.app.cli ...``: the `scrm` command (tests, bench and the engine's
test support spawn it this way)."""

from flows.app.cli import app

if __name__ == "__main__":
    app()
