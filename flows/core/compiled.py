"""The per-event path's modules that an install compiles with mypyc, and whether it did.

`setup.py` builds these modules as C extensions from the same typed source (``SCRM_PURE=1``
skips it); Python imports the extension before the ``.py`` beside it. Nothing here
imports them: the answers come from where each module would be loaded from.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Every event goes through these. Each is plain typed Python that mypyc accepts: no class
# that an interpreted class inherits from, no function whose signature a framework
# inspects (Bytewax's `@operator`), and a constructor that takes no arguments for a class
# that is pickled (unpickling a compiled class calls it bare).
MODULES = (
    "flows.core.conditions",
    "flows.core.contract",
    "flows.core.messages",
    "flows.core.streamtime",
    "flows.dataflow.profile",
    "flows.dataflow.profile_step",
    "flows.features.aggregates",
    "flows.features.dedupe",
    "flows.features.expressions",
    "flows.features.plan",
    "flows.features.rfm",
    "flows.features.windows",
    "rules.evaluate",
    "rules.runtime",
    "scoring.observe",
    "scoring.scorer",
    "scoring.vectors",
)


# The extension holding the compiled code of them all (mypyc's group).
GROUP = "flows.native__mypyc"


def sources() -> list[str]:
    """The modules' source files, relative to the project root (what `setup.py` compiles)."""
    return [name.replace(".", "/") + ".py" for name in MODULES]


def compiled() -> list[str]:
    """The modules that load from a compiled extension."""
    out = []
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is not None and not origin.endswith(".py"):
            out.append(name)
    return out


def stale() -> list[str]:
    """The modules whose source changed after their extension was built (they would run
    the old code until it is rebuilt)."""
    out = []
    group = importlib.util.find_spec(GROUP)
    # A module's own extension is a shim into the group's, rebuilt only when that changes.
    built = Path(group.origin).stat().st_mtime if group is not None and group.origin else 0.0
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or spec.origin.endswith(".py"):
            continue
        source = Path(spec.origin).parent / (name.rpartition(".")[2] + ".py")
        if source.exists() and source.stat().st_mtime > max(built, Path(spec.origin).stat().st_mtime):
            out.append(name)
    return out


def describe() -> str:
    """One line for a start-up log: how the per-event path runs."""
    done = compiled()
    if not done:
        return "per-event path interpreted (not compiled: SCRM_PURE or no build)"
    if len(done) == len(MODULES):
        return f"per-event path compiled (mypyc, {len(done)} modules)"
    missing = sorted(set(MODULES) - set(done))
    return f"per-event path partly compiled ({len(done)}/{len(MODULES)}; interpreted: {', '.join(missing)})"
