"""One learner per model: labels resolve, the model learns, versions are published.

Consistency across workers and processes (docs/design.md, "Scoring"):

* Every model has exactly one learner: the learner step is keyed by model name, so Bytewax
  routes all of a model's observations, activity and outcomes to one worker in the cluster.
* Scorers run on every worker inside the profile step and never learn. They serve the
  latest *published* version: the learner publishes a frozen copy at most every
  ``publish_every_s`` (wall clock) when it learned something, into its own process's
  `ModelRegistry` at once and, through the model sink, to Redis, where every other
  process's `ModelSync` picks it up within ``models.sync_interval_s``. Staleness of a
  served score is therefore bounded by publish_every_s (+ sync_interval_s in another
  process), 2 s + 1 s by default.
* Progressive validation (test, then train): when an observation's label resolves, the
  learner's current model (and the baseline) predicts it, the metrics take that
  prediction, and only then does the model learn it. Every number in ``model_metrics`` is
  therefore out-of-sample, and measures the model being served now: a prediction made
  when the observation arrived would be by a model one horizon older (labels of 1 resolve
  a horizon late), and would mix the model's drift into the measure.
* State survives restarts twice over: the learner is Bytewax state (snapshotted with
  recovery), and without recovery a fresh learner starts from the latest published version
  (Redis, loaded at start).
"""

from __future__ import annotations

import pickle
import time
import uuid
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from river import metrics, stats, utils

from flows.core.messages import Activity, ModelMetric, ModelVersion, Observation, Outcome
from scoring.calibration import Calibrator, Knots, apply
from scoring.labels import InactivityLabels, OutcomeLabels
from scoring.modeldefs import ModelDef, ModelSettings
from scoring.scorer import predict

DAY_MS = 86_400_000
AUTO_START_MS = 30 * DAY_MS  # an automatic horizon before enough gaps were seen
MIN_GAPS = 50


@dataclass
class PublishedModel:
    """What a version carries: the trained models and enough to refuse a mismatch."""

    name: str
    fingerprint: str
    version: int
    uid: str
    n_learned: int
    published_ms: int
    model: Any
    baseline: Any | None
    horizon_ms: int = 0  # inactivity: the label horizon the model learns now (it moves when auto)
    calibration: Knots = ((), ())  # raw score -> probability (`scoring.calibration`); () = identity

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=5)

    @staticmethod
    def from_bytes(blob: bytes) -> PublishedModel:
        obj = pickle.loads(blob)
        if not isinstance(obj, PublishedModel):
            raise ValueError("not a scrm-stream model")
        return obj


class _Rolling:
    """Rolling ROC AUC and log loss over the last `window` labelled predictions. The AUC is
    NaN while the window holds only one class (it is undefined there)."""

    def __init__(self, window: int) -> None:
        self.auc = metrics.RollingROCAUC(window_size=window)
        self.logloss: Any = utils.Rolling(metrics.LogLoss, window_size=window)  # proxies LogLoss
        self.labels: deque[int] = deque(maxlen=window)
        self.positives = 0

    def update(self, y: int, p: float) -> None:
        if len(self.labels) == self.labels.maxlen:
            self.positives -= self.labels[0]
        self.labels.append(y)
        self.positives += y
        self.auc.update(bool(y), p)
        self.logloss.update(bool(y), p)

    def values(self) -> tuple[float, float]:
        both = 0 < self.positives < len(self.labels)
        return (float(self.auc.get()) if both else float("nan")), float(self.logloss.get())


class Learner:
    """The learning side of one model (picklable: it is the learner step's Bytewax state)."""

    def __init__(self, mdef: ModelDef, settings: ModelSettings, start: PublishedModel | None = None) -> None:
        self.mdef = mdef
        self.settings = settings
        usable = start is not None and start.fingerprint == mdef.fingerprint()
        self.model = start.model if usable else mdef.build()  # type: ignore[union-attr]
        self.baseline = (start.baseline if usable else mdef.build()) if mdef.baseline else None  # type: ignore[union-attr]
        self.version = start.version if usable else 0  # type: ignore[union-attr]
        self.n_learned = start.n_learned if usable else 0  # type: ignore[union-attr]
        self.published_n = self.n_learned
        self.last_publish = 0.0
        self.last_metrics = 0.0
        self.stream_ms = -1
        self.positives = 0
        self.n_here = 0  # labels learned by this learner object (the positive rate's base)
        self.metric = _Rolling(settings.metrics_window)
        self.base_metric = _Rolling(settings.metrics_window)
        lab = mdef.label
        self.labels: InactivityLabels | OutcomeLabels = (
            InactivityLabels(lab.horizon_ms or AUTO_START_MS, settings.max_pending)
            if lab.kind == "inactivity"
            else OutcomeLabels(lab.max_open_ms, settings.max_pending)
        )
        # automatic horizon: a streaming quantile (P²) of the gaps between activity days
        auto = lab.kind == "inactivity" and not lab.horizon_ms
        self.gaps: stats.Quantile | None = stats.Quantile(lab.horizon_quantile) if auto else None
        self.n_gaps = 0
        self.start_horizon_ms = (getattr(start, "horizon_ms", 0) or 0) if usable else 0
        self.calibrator = Calibrator(min(500, max(50, mdef.min_learned)))
        self.calibration: Knots = getattr(start, "calibration", ((), ())) if usable else ((), ())

    # ---------------------------------------------------------------- stream side

    def _baseline_x(self, x: dict[str, float]) -> dict[Hashable, Any]:  # River's feature dict
        return {n: x[n] for n in self.mdef.baseline if n in x}

    def handle(self, items: list[Observation | Activity | Outcome]) -> int:
        """Fold in a batch; returns how many examples were learned."""
        learned = 0
        for it in items:
            if type(it) is Observation:
                if type(self.labels) is InactivityLabels:
                    self.labels.add(it.entity_id, it.ts_ms, it.x, self.horizon_ms())
                else:
                    self.labels.add(it.entity_id, it.ts_ms, it.x)
                if it.ts_ms > self.stream_ms:
                    self.stream_ms = it.ts_ms
            elif type(it) is Activity:
                if self.gaps is not None:
                    for g in it.gaps_ms:
                        self.gaps.update(g)
                        self.n_gaps += 1
                if it.ts_ms:
                    learned += self._learn(self.labels.activity(it.profile_id, it.ts_ms))  # type: ignore[union-attr]
            else:
                learned += self._learn(self.labels.close(it.entity_id, it.label))  # type: ignore[union-attr]
        return learned

    def horizon_ms(self) -> int:
        """The inactivity label's horizon now: the declared one, or the automatic one
        (``horizon_multiple`` x the ``horizon_quantile`` of the gaps seen, within 1 to 365
        days; before `MIN_GAPS` gaps, the published one or `AUTO_START_MS`)."""
        lab = self.mdef.label
        if lab.horizon_ms or lab.kind != "inactivity":
            return lab.horizon_ms
        if self.gaps is None or self.n_gaps < MIN_GAPS:
            return self.start_horizon_ms or AUTO_START_MS
        h = lab.horizon_multiple * float(self.gaps.get() or AUTO_START_MS)
        return int(min(max(h, DAY_MS), 365 * DAY_MS))

    def advance(self, watermark_ms: int) -> int:
        """Resolve what the watermark decides (label 1 for inactivity, expiry for outcomes)."""
        return self._learn(self.labels.advance(watermark_ms))

    def _learn(self, labelled: list[tuple[Any, int]]) -> int:
        model, base = self.model, self.baseline
        cal = self.calibrator
        for x, y in labelled:
            p = predict(model, x)
            self.metric.update(y, apply(self.calibration, p))  # what a scorer would serve now
            cal.update(p, y)
            if base is not None:
                bx = self._baseline_x(x)
                self.base_metric.update(y, predict(base, bx))
                base.learn_one(bx, bool(y))
            model.learn_one(x, bool(y))
            self.positives += y
        self.n_learned += len(labelled)
        self.n_here += len(labelled)
        return len(labelled)

    # ---------------------------------------------------------------- outputs

    def maybe_publish(self, now: float) -> PublishedModel | None:
        """A new version when something was learned and publish_every_s has passed."""
        if self.n_learned == self.published_n or now - self.last_publish < self.settings.publish_every_s:
            return None
        return self.publish(now)

    def publish(self, now: float) -> PublishedModel:
        import copy

        self.version += 1
        self.published_n = self.n_learned
        self.last_publish = now
        if self.calibrator.seen >= self.calibrator.min_labels:
            self.calibration = self.calibrator.knots()
        return PublishedModel(
            self.mdef.name,
            self.mdef.fingerprint(),
            self.version,
            uuid.uuid4().hex[:12],
            self.n_learned,
            int(now * 1000),
            copy.deepcopy(self.model),
            copy.deepcopy(self.baseline),
            self.horizon_ms() if self.mdef.label.kind == "inactivity" else 0,
            self.calibration,
        )

    def maybe_metrics(self, now: float) -> ModelMetric | None:
        if now - self.last_metrics < self.settings.metrics_every_s:
            return None
        self.last_metrics = now
        return self.metrics_row(now)

    def metrics_row(self, now: float | None = None) -> ModelMetric:
        now = time.time() if now is None else now
        auc, ll = self.metric.values()
        bauc, bll = self.base_metric.values() if self.baseline is not None else (float("nan"), float("nan"))
        return ModelMetric(
            self.mdef.name, int(now * 1000), self.stream_ms, self.version, self.n_learned,
            self.labels.size, self.labels.dropped, auc, ll, bauc, bll,
            self.positives / self.n_here if self.n_here else 0.0,
        )  # fmt: skip


def version_item(pm: PublishedModel) -> ModelVersion:
    return ModelVersion(pm.name, pm.version, pm.uid, pm.n_learned, pm.published_ms, pm.to_bytes())
