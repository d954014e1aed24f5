"""scrm-stream dataflows: sources, the event contract, stages, settings and the `scrm` CLI."""
