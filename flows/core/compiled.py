"""The per-event path's modules that an install compiles with mypyc, and whether it did.

`setup.py` builds these modules as C extensions from the same typed source; Python
imports the extension before the ``.py`` beside it. ``SCRM_PURE=1`` at install builds
none; at run time it loads these modules from their source even where they are compiled
(`honour_pure`, called by the packages' ``__init__``), so one checkout runs either way.
Nothing here imports them: the answers come from where each module would be loaded from.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Every event goes through these. Each is plain typed Python that mypyc accepts: no class
# that an interpreted class inherits from, no function whose signature a framework
# inspects (Bytewax's `@operator`), and a constructor that takes no arguments for a class
# that is pickled (unpickling a compiled class calls it bare).
MODULES = (
    "flows.core.batches",
    "flows.core.conditions",
    "flows.core.contract",
    "flows.core.digests",
    "flows.core.messages",
    "flows.core.streamtime",
    "flows.core.wire",
    "flows.dataflow.profile",
    "flows.dataflow.profile_step",
    "flows.dataflow.wakes",
    "flows.features.aggregates",
    "flows.features.dedupe",
    "flows.features.expressions",
    "flows.features.plan",
    "flows.features.rfm",
    "flows.features.windows",
    "rules.evaluate",
    "rules.runtime",
    "scoring.calibration",
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
        why = "SCRM_PURE is set" if os.environ.get("SCRM_PURE") else "not built: run make"
        return f"per-event path interpreted ({why})"
    if len(done) == len(MODULES):
        return f"per-event path compiled (mypyc, {len(done)} modules)"
    missing = sorted(set(MODULES) - set(done))
    return f"per-event path partly compiled ({len(done)}/{len(MODULES)}; interpreted: {', '.join(missing)})"


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the listed modules' ``.py`` files, ahead of their compiled extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES or not path:
            return None
        for folder in path:
            source = Path(folder) / (fullname.rpartition(".")[2] + ".py")
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def honour_pure() -> None:
    """With ``SCRM_PURE`` set, load the listed modules from source from now on."""
    if os.environ.get("SCRM_PURE") and not any(isinstance(f, _FromSource) for f in sys.meta_path):
        sys.meta_path.insert(0, _FromSource())
