"""The dataflow factory: source and sinks go in, a Bytewax `Dataflow` comes out.

Tests pass a `TestingSource` and `TestingSink`s; the engine passes Kafka / file /
synthetic sources and the ClickHouse and Kafka sinks. The flow itself never opens a
connection: sinks open theirs in ``build()`` on each worker.

>>> from bytewax.testing import TestingSink, TestingSource, run_main
>>> from flows.core.contract import RawRecord
>>> from flows.core.settings import load_settings
>>> good = RawRecord(b'{"eventId":"e1","profileId":"p1","type":"signup","ts":1700000000}', "doc")
>>> bad = RawRecord(b'not json', "doc")
>>> events, dead = [], []
>>> flow = build_flow(load_settings(env={}), TestingSource([good, good, bad]),
...                   FlowSinks(events=[TestingSink(events)], dead_letters=[TestingSink(dead)]))
>>> run_main(flow)
>>> [e.event_id for e in events if e.source != "engine"], [d.reason for d in dead]
(['e1'], ['invalid_json'])
>>> sorted(e.type for e in events if e.source == "engine")   # the engine's own changes
['segment_changed', 'tag_added']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink

from flows.core.batches import Keyed
from flows.core.contract import DeadLetter, Event, Limits, RawRecord, Validator
from flows.core.identifiers import IdentifierRules
from flows.core.messages import ActionRecord, FeatureUpdate, IdentityChange, ModelMetric, ModelVersion, Score
from flows.core.pii import PiiProtector
from flows.core.resources import config_dir
from flows.core.settings import Settings
from flows.core.streamtime import StreamClock
from flows.dataflow.persons import ResolvePersons
from flows.dataflow.stages import ingest
from flows.dataflow.wake_input import NO_INPUT_GRACE_S, InputEnds, WakeSource, watched
from flows.dataflow.wakes import SilentBook, WakeQueue
from flows.features.declarations import FeatureSet, load_features
from rules.actions import GuardStep, is_delivered
from rules.live import LiveJourneys
from scoring.modeldefs import ModelSet, load_models
from scoring.observe import ScoringPlan
from scoring.registry import ModelRegistry
from scoring.stage import learn
from sinks.durable import FlushOnSnapshot
from sinks.handoffs import HandOffs
from sinks.retry import RetryPolicy


@dataclass(frozen=True)
class FlowSinks:
    """Where each output stream goes; every list may hold several sinks (or none)."""

    events: Sequence[Sink[Event]] = field(default_factory=list)
    dead_letters: Sequence[Sink[DeadLetter]] = field(default_factory=list)
    # every feature update (the online store) / only the throttled snapshots (ClickHouse)
    features: Sequence[Sink[FeatureUpdate]] = field(default_factory=list)
    feature_snapshots: Sequence[Sink[FeatureUpdate]] = field(default_factory=list)
    scores: Sequence[Sink[Score]] = field(default_factory=list)
    model_metrics: Sequence[Sink[ModelMetric]] = field(default_factory=list)
    model_versions: Sequence[Sink[ModelVersion]] = field(default_factory=list)
    # every journey decision (ClickHouse actions) / only those to carry out (Kafka scrm.actions)
    actions: Sequence[Sink[ActionRecord]] = field(default_factory=list)
    actions_out: Sequence[Sink[ActionRecord]] = field(default_factory=list)
    # who each identifier belongs to, as it changes (identity.resolve only)
    identities: Sequence[Sink[IdentityChange]] = field(default_factory=list)


def make_pii(settings: Settings) -> PiiProtector:
    """The engine's hashing and masking of identifiers and PII props."""
    return PiiProtector(
        settings.pii.secret.get_secret_value().encode(),
        settings.pii.props_fields,
        IdentifierRules(settings.identity.default_region),
    )


def make_validator(settings: Settings) -> Validator:
    v = settings.validation
    limits = Limits(
        max_event_bytes=v.max_event_bytes,
        min_ts_ms=v.min_ts_ms,
        max_future_ms=int(v.max_future_s * 1000),
        dead_letter_raw_bytes=v.dead_letter_raw_bytes,
    )
    pii = make_pii(settings)
    return Validator(limits, pii)


def feature_set(settings: Settings) -> FeatureSet | None:
    """The declared features (None when features are off); a bad file raises ConfigError."""
    if not settings.features.enabled:
        return None
    return load_features(settings.features.file or config_dir() / "features.toml")


def model_set(settings: Settings, features: FeatureSet | None) -> ModelSet | None:
    """The declared models (None when models or features are off, or none is declared)."""
    if not settings.models.enabled or features is None:
        return None
    models = load_models(settings.models.file or config_dir() / "models.toml", features)
    return models if models.models else None


def build_flow(
    settings: Settings,
    source: Source[RawRecord],
    sinks: FlowSinks,
    flow_id: str = "scrm",
    clock: Callable[[], float] = time.time,
    registry: ModelRegistry | None = None,
    journeys: LiveJourneys | None = None,
    stopping: Callable[[], bool] | None = None,
    open_ended: bool = False,
) -> Dataflow:
    """Assemble input -> ingest (validate, dedupe, features, scoring) -> learners -> outputs.

    `registry` is the process's served models (the engine shares it with `ModelSync`);
    a flow built without one gets its own. `journeys` is the live journey catalog
    (`rules.store.JourneyCatalog`); without one no journey runs. `stopping` says when the
    run is stopping (the engine's `RunControl`): the wake input ends with the events'.
    `open_ended`: the source only ends when stopped (live Kafka), so a process that reads
    none of its partitions keeps its wakes for the profiles the others send it.
    """
    flow = Dataflow(flow_id)
    ends = InputEnds(stopping, None if open_ended else NO_INPUT_GRACE_S)
    raw = op.input("input", flow, watched(source, ends))
    queue = WakeQueue()
    book = SilentBook()
    f = settings.features
    stream = StreamClock(int(f.max_clock_skew_s * 1000), clock, int(f.partition_idle_s * 1000))
    wakes = op.input("wakes", flow, WakeSource(queue, ends, clock, book, stream))
    attach = getattr(source, "attach_stream_clock", None)
    if attach is not None:  # a source that knows when each partition is caught up (Kafka)
        attach(stream)
    features = feature_set(settings)
    models = model_set(settings, features)
    plan = None
    if models is not None:
        registry = registry or ModelRegistry({m.name: m for m in models.models})
        plan = ScoringPlan.of(models, features, registry)
    recovery = settings.recovery.dir is not None
    persons = handoffs = None
    ident = settings.identity
    if ident.resolve:
        r = settings.redis
        retry = RetryPolicy.from_settings(settings.retry)
        persons = ResolvePersons(r.url, r.timeout_s, retry, ident)
        handoffs = HandOffs(r.url, r.timeout_s, retry, ident.handoff_ttl_s)
    out = ingest(
        "ingest", raw, make_validator(settings), settings.dedupe, settings.features,
        features, stream, recovery, clock, plan, journeys, persons, handoffs, ident.handoff_wait_s,
        wakes=wakes, wake_queue=queue, silent=book,
    )  # fmt: skip
    if out.learner_items is not None and models is not None and registry is not None:
        lateness = int(settings.features.allowed_lateness_s * 1000)
        own = settings.models.learner == "process"
        learned = learn("learn", out.learner_items, models, registry, stream, lateness, recovery, clock, own)
        _outputs("scores", out.scores, sinks.scores, _profile_key)
        _outputs("model_metrics", learned.metrics, sinks.model_metrics, _model_key)
        _outputs("model_versions", learned.versions, sinks.model_versions, _model_key)
    if out.intents is not None and journeys is not None:
        r = settings.redis
        retry = RetryPolicy.from_settings(settings.retry)
        guard = GuardStep(r.url, r.timeout_s, retry, settings.journeys, journeys, settings.identity.resolve)
        decided = op.flat_map_batch("guards", out.intents, guard)
        _outputs("actions", decided, sinks.actions, _profile_key)
        if sinks.actions_out:
            deliver = op.filter("deliver", decided, is_delivered)
            _outputs("actions_out", deliver, sinks.actions_out, _profile_key)
    _outputs("events", out.events, sinks.events, _profile_key)
    _outputs("dead_letters", out.dead_letters, sinks.dead_letters, _origin_key)
    if out.identities is not None:
        _outputs("identities", out.identities, sinks.identities, _identifier_key)
    if out.features is not None:
        _outputs("features", out.features, sinks.features, _profile_key)
        if sinks.feature_snapshots:
            snaps = op.filter("snapshots", out.features, _is_snapshot)
            _outputs("feature_snapshots", snaps, sinks.feature_snapshots, _profile_key)
    return flow


def _outputs(name: str, stream: Any, sinks: Sequence[Sink[Any]], key: Callable[[Any], str]) -> None:
    """Each sink gets the stream; fixed-partitioned sinks get it keyed (they route by key),
    `FlushOnSnapshot` as `flows.core.wire` sends it (it rebuilds the messages)."""
    wired = keyed = None
    for i, sink in enumerate(sinks):
        if isinstance(sink, FlushOnSnapshot):
            wired = wired or op.flat_map_batch(f"{name}_wired", stream, Keyed(key, wire=True))
            op.output(f"{name}_out_{i}", wired, sink)
        elif isinstance(sink, FixedPartitionedSink):
            keyed = keyed or op.flat_map_batch(f"{name}_keyed", stream, Keyed(key))
            op.output(f"{name}_out_{i}", keyed, sink)
        else:
            op.output(f"{name}_out_{i}", stream, sink)


def _profile_key(item: Any) -> str:
    return str(item.profile_id)


def _model_key(item: Any) -> str:
    return str(item.model)


def _identifier_key(item: IdentityChange) -> str:
    return item.identifier


def _origin_key(item: DeadLetter) -> str:
    return f"{item.origin}:{item.partition}"


def _is_snapshot(u: FeatureUpdate) -> bool:
    return u.snapshot
