"""The messages that flow between the dataflow's steps and into the sinks.

Plain NamedTuples: cheap to build and to route; a Bytewax exchange to another process
carries them as plain tuples (`flows.core.wire`). Every layer may import them; they import
nothing of the project.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class FeatureUpdate(NamedTuple):
    """What changed in a profile's features as of a time, for the online store and snapshots."""

    profile_id: str
    as_of_ms: int
    values: dict[str, float]  # the features that may have changed (all of them on a first update)
    removed: tuple[str, ...]  # names that had a value and have none now
    full: dict[str, float] | None  # the whole map, when a ClickHouse snapshot row is due
    received_ms: int  # arrival of the newest event behind it (0 for a timer refresh)
    tags: tuple[str, ...] | None = None  # the profile's tags, when they changed or on a snapshot
    segment: str | None = None  # the profile's RFM segment, when it changed or on a snapshot
    # the profile's running journey instances when they changed (`ProfileJourneys.running`)
    journeys: str | None = None

    @property
    def snapshot(self) -> bool:
        return self.full is not None


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
    gaps_ms: tuple[int, ...] = ()  # silences of a day or more that this activity ended


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


class Intent(NamedTuple):
    """Something a journey wants done for a profile; the action id is deterministic."""

    kind: str  # send holdout task ticket quiet_hours_deferred quiet_hours_dropped suppress complaint
    action_id: str
    profile_id: str
    journey_id: str
    journey_version: int
    node_id: str
    channel: str  # send: the channel; task/ticket: "task"/"ticket"
    template: str  # send: the template; task/ticket: the title
    variant: str  # the A/B arm the instance is in ("" outside a split)
    priority: int
    trigger_event_id: str
    ts_ms: int  # event time of the decision
    received_ms: int  # arrival of the newest event behind it (0 when a timer)
    detail: dict[str, Any]  # vars, task assignee/due, ticket queue/priority, deferral


class ActionRecord(NamedTuple):
    action_id: str
    journey_id: str
    journey_version: int
    node_id: str
    profile_id: str
    channel: str
    template: str
    variant: str
    status: str  # sent capped suppressed no_consent deduped holdout task ticket quiet_hours_deferred ...
    reason: str
    trigger_event_id: str
    ts_ms: int
    received_ms: int
    detail: dict[str, Any]
    replay: bool = False  # decided before (a retry or a replay): counts no cap again
    unacked: bool = False  # a replayed send whose message the actions topic never acknowledged


class IdentityChange(NamedTuple):
    """An identifier (or a merged person's id) that now belongs to `person_id`: one row of
    the ``identities`` table, the latest ``seq`` winning."""

    identifier: str  # "<name>:<keyed hash>", "profileId:<id>" or "person:<id>"
    kind: str
    person_id: str
    merge_id: str  # the merge that moved it ('' when first seen)
    seq: int  # the identity graph's own order of changes
    ts_ms: int  # event time of the event behind the change
    received_ms: int
