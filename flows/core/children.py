"""Child processes the engine starts for work that should not hold the worker's GIL (a
model's learner, a store's writes).

Children are forked from a forkserver, so starting one costs milliseconds and a threaded
parent is never forked. A child ends when the pipe from its parent closes, so it never
outlives the parent, even one killed with SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

_MAIN_LOCK = threading.Lock()


def context(preload: list[str] | None = None) -> ForkServerContext:
    """The forkserver context; `preload` modules are imported once in the forkserver
    (it takes effect if the forkserver has not started yet)."""
    ctx = multiprocessing.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(preload)
    return ctx


def prestart(preload: list[str]) -> None:
    """Start the forkserver now, importing `preload` in it, so that its start-up overlaps
    the caller's and the first child starts without waiting for it."""
    from multiprocessing import forkserver

    context(preload)
    with _without_main():
        forkserver.ensure_running()


def start(
    ctx: ForkServerContext, target: Callable[..., Any], args: tuple[Any, ...], name: str
) -> BaseProcess:
    """Start `target(*args)` in a daemon child named `name`."""
    proc = ctx.Process(target=target, args=args, name=name, daemon=True)
    with _without_main():
        proc.start()
    return proc


@contextmanager
def _without_main() -> Iterator[None]:
    """A child started in here does not import the parent's ``__main__``.

    multiprocessing re-runs the main script in a forkserver child, which would run an
    unguarded script that embeds the engine a second time inside the child. Children need
    nothing from it (they are given library objects), so the script is hidden while the
    child's start-up data is taken."""
    with _MAIN_LOCK:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main
