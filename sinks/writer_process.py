"""A sink's flushes written by a child process: the worker only pickles the items.

A store's writes (turning items into commands, packing them, the round trips and their
retries) are Python work that ran under the worker's GIL in the sink's flush thread. Here
the flush thread sends the flush's items down a pipe (~1.3 µs an item to pickle) and waits
for the child's answer, with the GIL released; the child does the rest on another core.
The flush still returns only once the child has written, so a snapshot that waits for a
flush waits for the store, as before; a write that fails after its retries fails the
flush with the same ``SinkError``.

>>> w = WriterProcess("demo", _Double())
>>> w.write([1, 2, 3])
(12, 0)
>>> w.close()
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, Generic, Protocol, TypeVar

from flows.core import children
from flows.core.errors import SinkError

T = TypeVar("T")


class Writes(Protocol[T]):
    """What a child runs for each flush: write the items; (rows written, retries made).
    Raises SinkError when the store stays unreachable. Pickled to the child."""

    def __call__(self, items: list[T]) -> tuple[int, int]: ...


class WriterProcess(Generic[T]):
    """`writes` in a child process named `name`; `write` blocks until it is done."""

    def __init__(self, name: str, writes: Writes[T]) -> None:
        self.name = name
        ctx = children.context()
        self._conn, theirs = ctx.Pipe()
        self._proc = children.start(ctx, serve, (theirs, writes), f"scrm-writer-{name}")
        theirs.close()

    def write(self, items: list[T]) -> tuple[int, int]:
        try:
            self._conn.send(items)
            kind, body = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise SinkError(
                f"the writer process of {self.name} ended (exit code {self._proc.exitcode})"
            ) from exc
        if kind == "error":
            raise SinkError(body)
        rows, retries = body
        return rows, retries

    def close(self) -> None:
        """Let the child end, then wait for it (a few seconds at most)."""
        with contextlib.suppress(OSError):  # the child is gone already
            self._conn.send(None)
        self._conn.close()
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def serve(conn: Connection, writes: Writes[Any]) -> None:
    """The child: write each flush the parent sends until it sends None or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    logging.basicConfig(  # retries are logged here, as they happen, where the engine logs
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    while True:
        try:
            items = conn.recv()
        except EOFError:
            return
        if items is None:
            return
        try:
            conn.send(("ok", writes(items)))
        except SinkError as exc:
            conn.send(("error", str(exc)))
        except Exception:
            conn.send(("error", f"the writer process failed:\n{traceback.format_exc()}"))


class _Double:
    """A stand-in store for the doctest: the sum of the items' doubles."""

    def __call__(self, items: list[int]) -> tuple[int, int]:
        return sum(2 * i for i in items), 0
