"""What flows between the profile step, the learners and the sinks (plain NamedTuples:
cheap to build, to pickle and to route)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Score(NamedTuple):
    """One served score of an entity (a profile, or an opportunity of a profile)."""

    model: str
    entity_id: str  # the profile id, or the opportunity id
    profile_id: str
    score: float
    version: int
    as_of_ms: int  # event time the inputs hold for
    explanation: tuple[tuple[str, float], ...]  # top contributions, largest |value| first
    received_ms: int  # arrival of the newest event behind it (0 for a timer rescore)


class Observation(NamedTuple):
    """A learning example waiting for its label: the inputs as they were at `ts_ms`."""

    model: str
    entity_id: str
    profile_id: str
    ts_ms: int
    x: dict[str, float]


class Activity(NamedTuple):
    """Times of a profile's qualifying activity: resolves its open inactivity observations to 0."""

    model: str
    profile_id: str
    ts_ms: tuple[int, ...]


class Outcome(NamedTuple):
    """An entity closed with a label (an opportunity won = 1 or lost = 0)."""

    model: str
    entity_id: str
    ts_ms: int
    label: int


LearnerItem = Observation | Activity | Outcome


class ModelMetric(NamedTuple):
    """A model quality sample (progressive validation over the last `window` labels)."""

    model: str
    ts_ms: int  # wall clock
    stream_ms: int  # event time the learner had reached
    version: int
    n_learned: int
    n_pending: int
    n_dropped: int
    roc_auc: float
    log_loss: float
    baseline_roc_auc: float
    baseline_log_loss: float
    positive_rate: float


class ModelVersion(NamedTuple):
    """A published model: the pickled `PublishedModel`, for Redis and other processes."""

    model: str
    version: int
    uid: str
    n_learned: int
    published_ms: int
    blob: bytes


def model_key(item: Any) -> str:
    return str(item.model)
