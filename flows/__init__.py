"""scrm-stream dataflows: sources, the event contract, stages, settings and the `scrm` CLI."""

from flows.core.compiled import honour_pure

honour_pure()  # SCRM_PURE=1: the compiled modules load from their source
