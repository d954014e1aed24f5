"""The dataflow's stages as Bytewax operators: ``(step_id, up, ...) -> streams``.

`ingest` turns raw records into accepted, deduplicated events keyed by profile, and
dead letters. Each stage is a thin shell around the logic in `flows.dataflow.profile_step`
(the batch parser, the per-profile step) and the pure state below it.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from flows.core.batches import Flat, Keyed, person_of
from flows.core.contract import DeadLetter, Event, RawRecord, Validator
from flows.core.messages import FeatureUpdate, IdentityChange, Intent, LearnerItem, Score
from flows.core.settings import DedupeSettings, FeatureSettings
from flows.core.streamtime import Clock, StreamClock
from flows.dataflow.persons import ResolvePersons, merge_intent
from flows.dataflow.profile import new_state
from flows.dataflow.profile_step import (
    HandOffStore,
    ParseBatch,
    ProfileConfig,
    ProfileLogic,
    ProfileOut,
    model_inputs,
)
from flows.dataflow.wakes import SilentBook, Wake, WakeQueue
from flows.features.declarations import FeatureSet
from flows.features.plan import FeaturePlan
from flows.features.rfm import RfmSketch
from rules.live import LiveJourneys
from scoring.observe import ScoringPlan


@dataclass(frozen=True)
class IngestOut:
    """Accepted events (marked late or not, and the engine's own), feature updates, dead
    letters; with models, the served scores and what the learners need."""

    events: Stream[Event]
    features: Stream[FeatureUpdate] | None  # None when features are off
    dead_letters: Stream[DeadLetter]
    scores: Stream[Score] | None = None  # None when no model is declared
    learner_items: Stream[LearnerItem] | None = None
    intents: Stream[Intent] | None = None  # what journeys want done, before the guards
    identities: Stream[IdentityChange] | None = None  # None unless routing by person


class _ProfileState(StatefulBatchLogic[Event | Wake, ProfileOut, bytes | None]):
    """Bytewax's handle on one profile: every call goes to its `ProfileLogic`."""

    __slots__ = ("_logic",)

    def __init__(self, logic: ProfileLogic) -> None:
        self._logic = logic

    def on_batch(self, values: list[Event | Wake]) -> tuple[list[ProfileOut], bool]:
        return self._logic.on_batch(values)

    def on_notify(self) -> tuple[list[ProfileOut], bool]:
        return self._logic.on_notify()

    def on_eof(self) -> tuple[list[ProfileOut], bool]:
        return self._logic.on_eof()

    def notify_at(self) -> datetime | None:
        return self._logic.notify_at()

    def snapshot(self) -> bytes | None:
        return self._logic.snapshot()


def _is_wake(item: tuple[str, Any]) -> bool:
    """A wake for a profile, not the outputs of the silent book's rescorings."""
    return type(item[1]) is Wake


@operator
def ingest(
    step_id: str,
    up: Stream[RawRecord],
    validator: Validator,
    dedupe: DedupeSettings,
    feature_settings: FeatureSettings,
    feature_set: FeatureSet | None,
    stream: StreamClock,
    recovery: bool = False,
    clock: Clock = time.time,
    scoring: ScoringPlan | None = None,
    journeys: LiveJourneys | None = None,
    persons: ResolvePersons | None = None,
    handoffs: HandOffStore | None = None,
    handoff_wait_s: float = 30.0,
    *,
    wakes: Stream[tuple[str, Any]],
    wake_queue: WakeQueue,
    silent: SilentBook,
) -> IngestOut:
    """Validate, split off dead letters, (with `persons`) resolve each event's person, key
    by profile (the person), then per profile: drop repeated eventIds, mark late events,
    update features. With `persons`, `handoffs` carries a merged person's state to the
    winner. `wakes` (`flows.dataflow.wake_input.WakeSource`) brings each profile its
    deadlines from `wake_queue` (silent rescoring, windows, journey steps) in place of a
    Bytewax timer per profile; `silent` holds the scored profiles, whose silent rescorings
    the wake input does itself (its `ProfileOut`s join the profiles' here)."""
    parsed = op.flat_map_batch("parse", up, ParseBatch(validator, clock))
    dead_letters = op.flat_map_batch("dead_letters", parsed, Flat(attrgetter("dead_letters")))
    accepted = op.flat_map_batch("accepted", parsed, Flat(attrgetter("events")))
    merges = identities = None
    if persons is not None:
        routed = op.flat_map_batch("persons", accepted, persons)
        accepted = op.flat_map_batch("routed", routed, Flat(attrgetter("events")))
        merges = op.flat_map_batch("merges", routed, Flat(attrgetter("merges")))
        identities = op.flat_map_batch("identities", routed, Flat(attrgetter("identities")))
    woken = op.branch("woken", wakes, _is_wake)
    keyed = op.merge(
        "with_wakes", op.flat_map_batch("key_by_profile", accepted, Keyed(person_of, wire=True)), woken.trues
    )
    plan = FeaturePlan(feature_set) if feature_set is not None and feature_settings.enabled else None
    cfg = ProfileConfig(
        features=plan,
        sketch=RfmSketch(),
        ttl_ms=int(dedupe.ttl_s * 1000),
        max_ids=dedupe.max_ids_per_profile,
        lateness_ms=int(feature_settings.allowed_lateness_s * 1000),
        refresh_s=feature_settings.idle_refresh_s,
        idle_s=dedupe.idle_evict_s,
        snapshot_ms=int(feature_settings.snapshot_interval_s * 1000),
        stream=stream,
        clock=clock,
        recovery=recovery,
        scoring=scoring if feature_settings.enabled else None,
        score_bits=model_inputs(plan, scoring),
        journeys=journeys if feature_settings.enabled else None,
        handoffs=handoffs if persons is not None else None,
        handoff_wait_s=handoff_wait_s,
        wakes=wake_queue,
        silent=silent,
    )

    def _builder(resume: bytes | None) -> _ProfileState:
        if resume is not None:
            state = pickle.loads(resume)
            state.bind(cfg.features, cfg.sketch)
            cfg.stream.resume(state.last_as_of, state.partition)  # stream time survives a restart
            return _ProfileState(ProfileLogic(state, cfg, True))
        state = new_state(
            cfg.features,
            cfg.ttl_ms,
            cfg.max_ids,
            cfg.lateness_ms,
            cfg.scoring is not None,
            cfg.journeys is not None,
            sketch=cfg.sketch,
        )
        return _ProfileState(ProfileLogic(state, cfg, False))

    # each output stream takes its list of every `ProfileOut`, the profile's key dropped
    profiles = op.merge("with_silent", op.stateful_batch("profile", keyed, _builder), woken.falses)
    events = op.flat_map_batch("events", profiles, Flat(attrgetter("events"), keyed=True))
    if merges is not None:
        events = op.merge("with_merges", events, merges)
    if cfg.features is None:  # dedupe only: events are all that come out
        return IngestOut(events, None, dead_letters, identities=identities)
    updates = op.flat_map_batch("updates", profiles, Flat(attrgetter("updates"), keyed=True))
    if cfg.scoring is None and cfg.journeys is None:
        return IngestOut(events, updates, dead_letters, identities=identities)
    scores = op.flat_map_batch("scores", profiles, Flat(attrgetter("scores"), keyed=True))
    learner_items = op.flat_map_batch(
        "learner_items", profiles, Flat(attrgetter("learner_items"), keyed=True)
    )
    intents = (
        op.flat_map_batch("intents", profiles, Flat(attrgetter("intents"), keyed=True))
        if cfg.journeys is not None
        else None
    )
    if intents is not None and merges is not None:  # the guards fold a merged person's records
        intents = op.merge("with_merge_intents", intents, op.map("merge_intents", merges, merge_intent))
    return IngestOut(events, updates, dead_letters, scores, learner_items, intents, identities)
