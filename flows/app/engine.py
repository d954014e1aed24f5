"""A run of the engine: start what the settings ask for, run the dataflow, stop cleanly.

Order of a run: data directory; Redis (embedded Valkey or URL); ClickHouse client and
DDL; Kafka topics (when Kafka is used); the metrics endpoint; then the Bytewax dataflow
on this process's workers. Ctrl-C (or a bound: max events, duration) ends the input, so
every sink flushes before the run returns; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.recovery import (
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    RecoveryConfig,
)
from bytewax.run import cli_main
from rich.console import Console

from flows.app.gcpolicy import collect_rarely
from flows.app.progress import ProgressReporter, RunSummary, Snapshot, render_summary
from flows.core import children, compiled, metrics
from flows.core.contract import RawRecord
from flows.core.errors import ConfigError, ScrmError, SinkError
from flows.core.resources import config_dir
from flows.core.settings import SYNTHETIC_RATE, Settings, redact_url
from flows.dataflow.build import FlowSinks, build_flow, feature_set, model_set
from flows.sources.control import RunControl
from flows.sources.files import FileSource
from flows.sources.kafka import KafkaEventsSource
from flows.sources.synthetic import SyntheticSource
from rules import store as journey_store
from rules.actions import DeliveryMarks, action_message
from rules.journeys.load import load_folder
from rules.store import JourneyCatalog
from scoring.model_store import RedisModelStore
from scoring.registry import ModelRegistry, ModelSync
from sinks.clickhouse import ClickHouseSink, apply_ddl, connect, table_counts
from sinks.durable import FlushOnSnapshot
from sinks.feature_store import RedisFeatureStore
from sinks.kafka import KafkaTopicSink, dead_letter_message, ensure_topics
from sinks.redis_store import RedisService
from sinks.retry import RetryPolicy
from sinks.score_store import RedisScoreStore
from sinks.tables import ACTIONS, DEAD_LETTERS, EVENTS, FEATURES, IDENTITIES, MODEL_METRICS, SCORES

log = logging.getLogger("scrm.engine")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a Bytewax cluster (one process when `addresses` is empty)."""

    process_id: int | None = None
    addresses: tuple[str, ...] = ()


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy.from_settings(settings.retry)


def make_source(settings: Settings, control: RunControl) -> Source[RawRecord]:
    src = settings.source
    if src.kind == "synthetic":
        return SyntheticSource(src.synthetic, SYNTHETIC_RATE if src.rate is None else src.rate, control)
    if src.kind == "file":
        if src.file is None:
            raise ConfigError("source.kind = 'file' needs a file (--file PATH or source.file)")
        return FileSource(src.file, src.csv, src.rate or 0.0, control)
    return KafkaEventsSource(settings.kafka, control)


def make_sinks(settings: Settings) -> FlowSinks:
    retry = retry_policy(settings)
    dead: list = [ClickHouseSink(settings.clickhouse, DEAD_LETTERS, retry)]
    if settings.source.kind == "kafka":
        dead.append(KafkaTopicSink(settings.kafka, settings.kafka.dlq_topic, dead_letter_message, retry))
    features_on = settings.features.enabled
    models_on = features_on and settings.models.enabled
    journeys_on = features_on and settings.journeys.enabled
    r = settings.redis
    store = RedisFeatureStore(r.url, settings.features.redis_ttl_s, r.timeout_s, retry, writer=r.writer)
    sinks = FlowSinks(
        events=[ClickHouseSink(settings.clickhouse, EVENTS, retry)],
        dead_letters=dead,
        features=[store] if features_on else [],
        feature_snapshots=[ClickHouseSink(settings.clickhouse, FEATURES, retry)] if features_on else [],
        scores=[
            ClickHouseSink(settings.clickhouse, SCORES, retry),
            RedisScoreStore(r.url, settings.models.redis_ttl_s, r.timeout_s, retry, writer=r.writer),
        ]
        if models_on
        else [],
        model_metrics=[ClickHouseSink(settings.clickhouse, MODEL_METRICS, retry)] if models_on else [],
        model_versions=[RedisModelStore(r.url, r.timeout_s, retry)] if models_on else [],
        actions=[ClickHouseSink(settings.clickhouse, ACTIONS, retry)] if journeys_on else [],
        actions_out=[
            KafkaTopicSink(
                settings.kafka,
                settings.kafka.actions_topic,
                action_message,
                retry,
                acked=DeliveryMarks(r.url, r.timeout_s, retry),
            )
        ]
        if journeys_on and settings.source.kind == "kafka"
        else [],
        identities=[ClickHouseSink(settings.clickhouse, IDENTITIES, retry)]
        if settings.identity.resolve
        else [],
    )
    if settings.recovery.dir is None:
        return sinks

    # With recovery on, buffered sinks flush at every snapshot (sinks/durable.py).
    def durable(items: Sequence[Any], name: str) -> list[Any]:
        return [
            FlushOnSnapshot(s, f"{name}{i}")
            if isinstance(s, ClickHouseSink | RedisFeatureStore | RedisScoreStore | KafkaTopicSink)
            else s
            for i, s in enumerate(items)
        ]

    return FlowSinks(
        events=durable(sinks.events, "events"),
        dead_letters=durable(sinks.dead_letters, "dead_letters"),
        features=durable(sinks.features, "features"),
        feature_snapshots=durable(sinks.feature_snapshots, "feature_snapshots"),
        scores=durable(sinks.scores, "scores"),
        model_metrics=durable(sinks.model_metrics, "model_metrics"),
        model_versions=sinks.model_versions,
        actions=durable(sinks.actions, "actions"),
        actions_out=durable(sinks.actions_out, "actions_out"),
        identities=durable(sinks.identities, "identities"),
    )


def journey_catalog(settings: Settings, redis: RedisService) -> JourneyCatalog | None:
    """The live journeys (None when journeys or features are off); with
    ``journeys.load_at_start`` the journey folder is loaded into Redis first."""
    if not (settings.journeys.enabled and settings.features.enabled):
        return None
    client = redis.client()
    if settings.journeys.load_at_start:
        folder = settings.journeys.dir or config_dir() / "journeys"
        done = journey_store.load(client, load_folder(folder))
        for j, what in done:
            log.info("journey %s v%d: %s", j.id, j.version, what)
    return JourneyCatalog(client, settings.journeys.reload_interval_s, settings.journeys.default_timezone)


def model_registry(settings: Settings) -> ModelRegistry | None:
    """The process's served models, or None when no model is declared (or models are off)."""
    models = model_set(settings, feature_set(settings))
    return ModelRegistry({m.name: m for m in models.models}) if models is not None else None


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    rdir = settings.recovery.dir
    if rdir is None:
        return None
    if not rdir.is_dir() or not any(rdir.glob("part-*.sqlite3")):
        raise ConfigError(
            f"recovery.dir {rdir} has no recovery partitions; create them once with "
            f"`scrm recovery init` (refusing to start fresh silently)"
        )
    return RecoveryConfig(str(rdir), backup_interval=timedelta(seconds=settings.recovery.backup_interval_s))


def prepare_clickhouse(settings: Settings) -> list[str]:
    """Connect (with retries) and apply the DDL in ``sql/``; returns the files applied."""
    client = connect(settings.clickhouse, retry_policy(settings))
    try:
        return apply_ddl(client, settings.clickhouse.database)
    finally:
        client.close()


@contextmanager
def _graceful_sigint(control: RunControl, console: Console) -> Iterator[None]:
    """First Ctrl-C ends the input (sinks flush); the second aborts."""
    previous = signal.getsignal(signal.SIGINT)
    pressed = {"n": 0}

    def _handler(signum: int, frame: FrameType | None) -> None:
        pressed["n"] += 1
        if pressed["n"] == 1:
            console.print("\n[yellow]stopping: ending input and flushing sinks (Ctrl-C again to abort)[/]")
            control.stop()
        else:
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, _handler)
    except ValueError:  # not the main thread (tests): no handler, nothing to restore
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ends_only_when_stopped(settings: Settings, control: RunControl) -> bool:
    """Whether the input ends only when the run stops (live Kafka, the synthetic generator),
    not at an end of its own (a file, the end of the topic) or after `max_records` read here.
    A process that reads no partition then wakes its profiles until it stops
    (`flows.dataflow.wake_input.InputEnds`); a duration stops every process alike."""
    if control.max_records:  # counted by each process on its own partitions
        return False
    if settings.source.kind == "kafka":
        return not settings.kafka.stop_at_end
    return settings.source.kind == "synthetic"


def _learners_in_children(settings: Settings) -> bool:
    return settings.models.enabled and settings.models.learner == "process"


def child_modules(settings: Settings) -> list[str]:
    """What the forkserver imports once for the children forked from it: the learners'
    code (River, NumPy) and what the stores' writers unpickle."""
    stores = ["sinks.feature_store", "sinks.score_store"]
    learners = ["scoring.learner_host"] if _learners_in_children(settings) else []
    return [*learners, "sinks.writer_process", *stores]


def starts_children(settings: Settings) -> bool:
    """Whether the run forks children: a learner per model, a writer per Redis store (both
    exist only with features on, see `make_sinks` and `build_flow`)."""
    return settings.features.enabled and (
        _learners_in_children(settings) or settings.redis.writer == "process"
    )


def run_flow(flow: Dataflow, settings: Settings, cluster: Cluster) -> None:
    """Execute `flow` on this process's workers (and cluster peers, if any)."""
    rc = recovery_config(settings)
    children.context(child_modules(settings))  # no effect once `run` has started the forkserver
    try:
        with collect_rarely(settings.engine.gc_young_threshold):
            cli_main(
                flow,
                workers_per_process=settings.engine.workers,
                process_id=cluster.process_id,
                addresses=list(cluster.addresses) or None,
                epoch_interval=timedelta(seconds=settings.recovery.snapshot_interval_s),
                recovery_config=rc,
            )
    except (MissingPartitionsError, InconsistentPartitionsError, NoPartitionsError) as exc:
        # The recovery store cannot give one consistent state: refuse, never start fresh.
        raise ConfigError(
            f"recovery.dir {settings.recovery.dir}: {exc}. Restore a complete, consistent set of "
            f"part-*.sqlite3 files (all from the same backup), or start from nothing with a new "
            f"recovery.dir and `scrm recovery init` (the Kafka input is then read from its start)"
        ) from exc


def run(
    settings: Settings,
    console: Console | None = None,
    cluster: Cluster | None = None,
    control: RunControl | None = None,
) -> RunSummary:
    """One run of the engine with the given settings; returns the summary it printed."""
    console = console or Console(stderr=True)
    cluster = cluster or Cluster()
    control = control or RunControl(settings.source.max_events, settings.source.duration_s)
    data_dir = settings.engine.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    retry = retry_policy(settings)
    # The children's forkserver imports their code (~1 s) while Valkey, the schema and the
    # dataflow are set up, instead of when the first store writer starts.
    if starts_children(settings):
        children.prestart(child_modules(settings))

    redis = RedisService(settings.redis, data_dir, retry)
    redis.start()
    try:
        settings = settings.with_overrides({"redis": {"url": redis.url}})
        prepare_clickhouse(settings)
        if settings.source.kind == "kafka":
            k = settings.kafka
            ensure_topics(
                k, {k.events_topic: k.partitions, k.dlq_topic: k.partitions, k.actions_topic: k.partitions}
            )
        port = settings.metrics.port
        if port and cluster.process_id:
            port += cluster.process_id
        metrics.serve(port, settings.metrics.bind)

        registry = model_registry(settings)
        sync = None
        if registry is not None:
            # Start from the published versions (other processes, earlier runs, imports),
            # and keep picking up what other processes' learners publish.
            sync = ModelSync(redis.client(), registry, settings.models.sync_interval_s)
            retry.call(sync.poll, "load published models from Redis")
            sync.start()
        catalog = journey_catalog(settings, redis)
        if catalog is not None:
            catalog.start()
        flow = build_flow(
            settings,
            make_source(settings, control),
            make_sinks(settings),
            registry=registry,
            journeys=catalog,
            stopping=control.stopping,
            open_ended=ends_only_when_stopped(settings, control),
        )
        console.print(
            f"scrm run: source={settings.source.kind} workers={settings.engine.workers} "
            f"clickhouse={redact_url(settings.clickhouse.url)} redis={redis.display_url}"
            + (f" max_events={control.max_records}" if control.max_records else "")
            + (f" duration={control.duration_s:g}s" if control.duration_s else ""),
            highlight=False,
        )
        console.print(f"scrm run: {compiled.describe()}", highlight=False)
        progress = ProgressReporter(console, settings.engine.progress_interval_s)
        base = progress.base
        started, cpu = time.monotonic(), time.process_time()
        progress.start()
        control.start()  # `duration_s` counts in every process, also one that reads no partition
        try:
            with _graceful_sigint(control, console):
                run_flow(flow, settings, cluster)
        except ScrmError:
            raise
        except Exception as exc:  # Bytewax wraps errors raised inside steps
            raise _unwrap(exc) from exc
        finally:
            progress.stop()
            if sync is not None:
                sync.stop()
            if catalog is not None:
                catalog.stop()
        ended = time.monotonic()
        elapsed, cpu = ended - started, time.process_time() - cpu
        client = connect(settings.clickhouse, retry)
        try:
            tables = table_counts(client, settings.clickhouse.database)
        finally:
            client.close()
        summary = RunSummary(
            counts=Snapshot.take().minus(base),
            elapsed_s=elapsed,
            tables=tables,
            clickhouse_url=redact_url(settings.clickhouse.url),
            database=settings.clickhouse.database,
            data_dir=str(data_dir),
            redis=redis.display_url,
            cpu_s=cpu,
            flow_s=ended - control.reading_since(started),
        )
        render_summary(console, summary)
        return summary
    finally:
        redis.stop()


def _unwrap(exc: BaseException) -> BaseException:
    """Find our own error inside Bytewax's wrapping, so the user sees its message."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ScrmError):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "SinkError" in text:
        return SinkError(text.split("SinkError:", 1)[-1].strip().splitlines()[0])
    return exc


def init_recovery(settings: Settings, partitions: int) -> Path:
    """Create the Bytewax recovery partitions in ``recovery.dir``."""
    from bytewax.recovery import init_db_dir

    rdir = settings.recovery.dir
    if rdir is None:
        raise ConfigError("set recovery.dir (or SCRM_RECOVERY__DIR) first")
    rdir.mkdir(parents=True, exist_ok=True)
    init_db_dir(rdir, partitions)
    return rdir
