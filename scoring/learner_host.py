"""Where a model's learner runs: in the worker, or in a child process of its own.

The learner step (`scoring.stage`) hands every batch of items to `feed`, with the label
watermark and the wall clock, and collects what came of it from `results`. `InWorker`
learns on the spot. `InProcess` sends the batch down a pipe to a child process that holds
the `Learner`, so learning (River's ``learn_one`` and ``predict_proba_one``, the rolling
metrics: ~40 µs an example) runs on another core, outside the worker's GIL; the worker
only pickles the items. Both give the same results in the same order; the child's arrive
a batch or so later, which only delays a published version (at most one every
``publish_every_s`` anyway). `finish` and `state` wait for the child to catch up.

The child is forked from a forkserver that has imported this module (and River) once, so
starting one costs milliseconds. It ends when the pipe from its parent closes (the step is
dropped, or the parent process dies, even by SIGKILL); an error in it is raised in the
worker at its next call, with the child's traceback.
"""

from __future__ import annotations

import pickle
import queue
import signal
import threading
import traceback
from collections import deque
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from flows.core import children
from flows.core.messages import LearnerItem, ModelMetric
from flows.core.wire import from_wire
from scoring.learner import Learner, PublishedModel

WAIT_S = 300.0  # the longest `state` or `finish` waits for the child to catch up
Answers = queue.SimpleQueue[tuple[str, Any]]  # the child's answers to `state` and `finish`


class Result(NamedTuple):
    """What one call did: examples learned, a version published, a metrics row."""

    learned: int
    published: PublishedModel | None
    metrics: ModelMetric | None
    pending: int  # observations awaiting a label


def step(learner: Learner, items: list[LearnerItem], watermark_ms: int | None, now: float) -> Result:
    """Fold in `items`, resolve what the label watermark decides (None: no stream time
    yet), publish and report when due."""
    learned = learner.handle(items) if items else 0
    if watermark_ms is not None:
        learned += learner.advance(watermark_ms)
    return Result(learned, learner.maybe_publish(now), learner.maybe_metrics(now), learner.labels.size)


def final(learner: Learner, now: float) -> Result:
    """The end of a bounded run: publish what was learned since the last version, and a
    metrics row."""
    pm = learner.publish(now) if learner.n_learned != learner.published_n else None
    return Result(0, pm, learner.metrics_row(now), learner.labels.size)


class InWorker:
    """The learner in the worker's own thread."""

    def __init__(self, learner: Learner) -> None:
        self._learner = learner
        self._done: list[Result] = []

    def feed(self, items: list[Any], watermark_ms: int | None, now: float) -> None:
        """`items` as `flows.core.wire.to_wire` made them (the learner step's input)."""
        self._done.append(step(self._learner, [from_wire(v) for v in items], watermark_ms, now))

    def results(self) -> list[Result]:
        done, self._done = self._done, []
        return done

    def finish(self, now: float) -> list[Result]:
        return [*self.results(), final(self._learner, now)]

    def state(self) -> bytes:
        return pickle.dumps(self._learner, protocol=5)


class InProcess:
    """The learner in a child process; the same calls as `InWorker`."""

    def __init__(self, learner: Learner) -> None:
        ctx = children.context([__name__])
        requests_r, self._requests = ctx.Pipe(duplex=False)
        replies, replies_w = ctx.Pipe(duplex=False)
        self.name = learner.mdef.name
        blob = pickle.dumps(learner, protocol=5)
        self._proc = children.start(ctx, serve, (requests_r, replies_w, blob), f"scrm-learner-{self.name}")
        requests_r.close()
        replies_w.close()
        # A reader thread empties the reply pipe as the child writes it, so neither side
        # ever blocks on a full pipe while the other waits; it holds no reference to self,
        # so dropping this object closes the request pipe, which ends the child.
        self._results: deque[Result] = deque()
        self._answers: Answers = queue.SimpleQueue()
        self._failed: list[str] = []
        self._reader = threading.Thread(
            target=_read, args=(replies, self._results, self._answers, self._failed),
            name=f"scrm-learner-{self.name}-replies", daemon=True,
        )  # fmt: skip
        self._reader.start()

    def feed(self, items: list[Any], watermark_ms: int | None, now: float) -> None:
        # Wire tuples go down the pipe as they came (a named tuple pickles through a
        # Python call each); the child turns them back. Blocks while the child is far behind.
        self._send(("feed", items, watermark_ms, now))

    def _send(self, msg: tuple[Any, ...]) -> None:
        self._check()
        try:
            self._requests.send(msg)
        except OSError as exc:  # the child is gone: say why, once its last words are read
            self._reader.join(5.0)
            self._check()
            raise RuntimeError(f"the learner process of {self.name} ended") from exc

    def results(self) -> list[Result]:
        self._check()
        out = []
        while self._results:
            out.append(self._results.popleft())
        return out

    def finish(self, now: float) -> list[Result]:
        last: Result = self._ask("finish", now)
        return [*self.results(), last]

    def state(self) -> bytes:
        blob: bytes = self._ask("state", 0.0)
        return blob

    def _ask(self, kind: str, now: float) -> Any:
        self._send((kind, now))
        try:
            what, answer = self._answers.get(timeout=WAIT_S)
        except queue.Empty:
            raise RuntimeError(f"the learner process of {self.name}: no answer in {WAIT_S:.0f} s") from None
        if what == "error":
            raise RuntimeError(f"the learner process of {self.name} failed:\n{answer}")
        return answer

    def _check(self) -> None:
        if self._failed:
            raise RuntimeError(f"the learner process of {self.name} failed:\n{self._failed[0]}")


def _read(replies: Connection, results: deque[Result], answers: Answers, failed: list[str]) -> None:
    """The parent's reader thread: results to the deque, answers to the queue."""
    while True:
        try:
            kind, body = replies.recv()
        except (EOFError, OSError):
            if not failed:
                failed.append("the learner process ended")
            answers.put(("error", failed[0]))
            return
        if kind == "result":
            results.append(body)
        elif kind == "error":
            failed.append(body)
            answers.put((kind, body))
        else:
            answers.put((kind, body))


def serve(requests: Connection, replies: Connection, blob: bytes) -> None:
    """The child process: learn what arrives until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    learner: Learner = pickle.loads(blob)
    pending = -1  # the last count of open observations the parent was told
    try:
        while True:
            try:
                msg = requests.recv()
            except EOFError:
                return
            kind = msg[0]
            if kind == "feed":
                r = step(learner, [from_wire(v) for v in msg[1]], msg[2], msg[3])
                if r.learned or r.published is not None or r.metrics is not None or r.pending != pending:
                    replies.send(("result", r))
                    pending = r.pending
            elif kind == "finish":
                replies.send(("finish", final(learner, msg[1])))
            elif kind == "state":
                replies.send(("state", pickle.dumps(learner, protocol=5)))
    except BaseException:
        replies.send(("error", traceback.format_exc()))
        raise
