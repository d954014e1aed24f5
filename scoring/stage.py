"""The learner step as a Bytewax operator: one `Learner` per model, keyed by model name.

It wakes for its items and once a second (wall clock) on its own, so labels whose horizon
passed resolve and versions are published even when no observation arrives. The label
watermark is the process's stream time (`flows.core.streamtime`) minus the allowed lateness.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from flows.core import metrics
from flows.core.batches import Keyed
from flows.core.messages import LearnerItem, ModelMetric, ModelVersion
from flows.core.streamtime import StreamClock
from flows.core.wire import from_wire
from scoring.learner import Learner, version_item
from scoring.learner_host import InProcess, InWorker, Result
from scoring.modeldefs import ModelSet
from scoring.registry import ModelRegistry

TICK_S = 1.0


@dataclass(frozen=True)
class LearnOut:
    metrics: Stream[ModelMetric]
    versions: Stream[ModelVersion]


@dataclass(frozen=True)
class _LearnConfig:
    registry: ModelRegistry
    stream: StreamClock
    lateness_ms: int
    recovery: bool
    clock: Callable[[], float]
    own_process: bool  # the learner in a child process (`scoring.learner_host`)


class _LearnerLogic(StatefulBatchLogic[LearnerItem, ModelMetric | ModelVersion, bytes | None]):
    def __init__(self, learner: Learner | None, factory: Callable[[str], Learner], cfg: _LearnConfig) -> None:
        # Bytewax's builder does not get the key: a new learner is made from the first
        # item's model name.
        self._factory = factory
        self._cfg = cfg
        if learner is not None:
            self._start(learner)

    def _start(self, learner: Learner) -> None:
        cfg = self._cfg
        name = learner.mdef.name
        seen = cfg.registry.latest(name)
        if seen is not None and seen.version > learner.version:
            # resumed from a snapshot older than the last publish: keep versions increasing
            learner.version = seen.version
        self._learned = metrics.MODEL_LEARNED.labels(model=name)
        self._auc = metrics.MODEL_ROC_AUC.labels(model=name)
        self._logloss = metrics.MODEL_LOG_LOSS.labels(model=name)
        self._pending = metrics.MODEL_PENDING.labels(model=name)
        self._version = metrics.MODEL_VERSION.labels(model=name)
        if learner.n_learned:  # resumed: serve what it knows at once
            cfg.registry.install(learner.publish(cfg.clock()))
            self._version.set(learner.version)
        self._host: InWorker | InProcess = InProcess(learner) if cfg.own_process else InWorker(learner)

    def _watermark(self) -> int | None:
        now_ms = self._cfg.stream.now_ms()
        return now_ms - self._cfg.lateness_ms if now_ms >= 0 else None

    def _emit(self, results: list[Result]) -> list[ModelMetric | ModelVersion]:
        out: list[ModelMetric | ModelVersion] = []
        for r in results:
            self._learned.inc(r.learned)
            if r.published is not None:
                self._cfg.registry.install(r.published)
                out.append(version_item(r.published))
                self._version.set(r.published.version)
            if r.metrics is not None:
                out.append(r.metrics)
                self._auc.set(r.metrics.roc_auc)
                self._logloss.set(r.metrics.log_loss)
            self._pending.set(r.pending)
        return out

    def on_batch(self, values: list[Any]) -> tuple[list[ModelMetric | ModelVersion], bool]:
        """`values`: learner items as wire tuples (`flows.core.wire`); the host takes them so."""
        if not hasattr(self, "_host"):
            self._start(self._factory(from_wire(values[0]).model))
        self._host.feed(values, self._watermark(), self._cfg.clock())
        return self._emit(self._host.results()), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[ModelMetric | ModelVersion], bool]:
        self._host.feed([], self._watermark(), self._cfg.clock())
        return self._emit(self._host.results()), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[ModelMetric | ModelVersion], bool]:
        """End of a bounded run: publish and report what was learned."""
        return self._emit(self._host.finish(self._cfg.clock())), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return datetime.fromtimestamp(self._cfg.clock() + TICK_S, UTC)

    def snapshot(self) -> bytes | None:
        return self._host.state() if self._cfg.recovery else None


def _is_metric(item: Any) -> bool:
    return type(item) is ModelMetric


@operator
def learn(
    step_id: str,
    up: Stream[LearnerItem],
    models: ModelSet,
    registry: ModelRegistry,
    stream: StreamClock,
    lateness_ms: int,
    recovery: bool = False,
    clock: Callable[[], float] = time.time,
    own_process: bool = False,
) -> LearnOut:
    """Route every model's items to its single learner; out come quality rows and versions."""
    cfg = _LearnConfig(registry, stream, lateness_ms, recovery, clock, own_process)

    def new_learner(name: str) -> Learner:
        return Learner(models.by_name(name), models.settings, registry.latest(name))

    def builder(resume: bytes | None) -> _LearnerLogic:
        return _LearnerLogic(pickle.loads(resume) if resume is not None else None, new_learner, cfg)

    keyed = op.flat_map_batch("key_by_model", up, Keyed(_model_of, wire=True))
    out = op.key_rm("unkey", op.stateful_batch("learners", keyed, builder))
    split = op.branch("split", out, _is_metric)
    return LearnOut(split.trues, split.falses)  # type: ignore[arg-type]


def _model_of(item: LearnerItem) -> str:
    return item.model
