"""How the engine's records become rows of the ClickHouse tables defined in ``sql/``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from flows.core.contract import DeadLetter, Event
from flows.core.messages import ActionRecord, FeatureUpdate, ModelMetric, Score
from sinks.clickhouse import TableSpec


def _event_columns(batch: Sequence[Event]) -> list[list[Any]]:
    dumps = orjson.dumps
    return [
        [e.event_id for e in batch],
        [e.profile_id for e in batch],
        [e.type for e in batch],
        [e.source for e in batch],
        [e.ts_ms for e in batch],
        [e.received_ms for e in batch],
        [dumps(e.props).decode() if e.props else "{}" for e in batch],
        [e.identifiers for e in batch],
        [e.pii_hashes for e in batch],
        [e.origin for e in batch],
        [e.partition for e in batch],
        [e.offset for e in batch],
        [1 if e.late else 0 for e in batch],
    ]


EVENTS: TableSpec[Event] = TableSpec(
    table="events",
    columns=(
        "event_id",
        "profile_id",
        "type",
        "source",
        "ts",
        "ingested_at",
        "props",
        "identifiers",
        "pii_hashes",
        "origin",
        "src_partition",
        "src_offset",
        "late",
    ),
    to_columns=_event_columns,
    times=lambda e: (e.received_ms, e.ts_ms),
)


def _dead_letter_columns(batch: Sequence[DeadLetter]) -> list[list[Any]]:
    return [
        [d.received_ms for d in batch],
        [d.reason for d in batch],
        [d.detail for d in batch],
        [d.raw for d in batch],
        [d.raw_size for d in batch],
        [d.key or b"" for d in batch],
        [d.origin for d in batch],
        [d.partition for d in batch],
        [d.offset for d in batch],
    ]


DEAD_LETTERS: TableSpec[DeadLetter] = TableSpec(
    table="dead_letters",
    columns=(
        "received_at",
        "reason",
        "detail",
        "raw",
        "raw_size",
        "raw_key",
        "origin",
        "src_partition",
        "src_offset",
    ),
    to_columns=_dead_letter_columns,
    times=lambda d: (d.received_ms, d.received_ms),
)


def _feature_columns(batch: Sequence[FeatureUpdate]) -> list[list[Any]]:
    return [
        [u.profile_id for u in batch],
        [u.as_of_ms for u in batch],
        [u.full for u in batch],
        [list(u.tags or ()) for u in batch],
        [u.segment or "" for u in batch],
    ]


FEATURES: TableSpec[FeatureUpdate] = TableSpec(
    table="features",
    columns=("profile_id", "ts", "values", "tags", "segment"),
    to_columns=_feature_columns,
    times=lambda u: (u.received_ms or u.as_of_ms, u.as_of_ms),
)


def _score_columns(batch: Sequence[Score]) -> list[list[Any]]:
    return [
        [s.model for s in batch],
        [s.entity_id for s in batch],
        [s.profile_id for s in batch],
        [s.score for s in batch],
        [s.version for s in batch],
        [s.as_of_ms for s in batch],
        [dict(s.explanation) for s in batch],
        [s.received_ms or s.as_of_ms for s in batch],
    ]


SCORES: TableSpec[Score] = TableSpec(
    table="scores",
    columns=(
        "model",
        "entity_id",
        "profile_id",
        "score",
        "model_version",
        "ts",
        "explanation",
        "received_at",
    ),
    to_columns=_score_columns,
    times=lambda s: (s.received_ms or s.as_of_ms, s.as_of_ms),
)


def _metric_columns(batch: Sequence[ModelMetric]) -> list[list[Any]]:
    cols = [list(c) for c in zip(*batch, strict=True)]
    cols[2] = [max(0, t) for t in cols[2]]  # stream time is -1 before any event
    return cols


MODEL_METRICS: TableSpec[ModelMetric] = TableSpec(
    table="model_metrics",
    columns=(
        "model",
        "ts",
        "stream_ts",
        "model_version",
        "n_learned",
        "n_pending",
        "n_dropped",
        "roc_auc",
        "log_loss",
        "baseline_roc_auc",
        "baseline_log_loss",
        "positive_rate",
    ),
    to_columns=_metric_columns,
)


def _action_columns(batch: Sequence[ActionRecord]) -> list[list[Any]]:
    dumps = orjson.dumps
    return [
        [a.action_id for a in batch],
        [a.journey_id for a in batch],
        [a.journey_version for a in batch],
        [a.node_id for a in batch],
        [a.profile_id for a in batch],
        [a.channel for a in batch],
        [a.template for a in batch],
        [a.variant for a in batch],
        [a.status for a in batch],
        [a.reason for a in batch],
        [a.trigger_event_id for a in batch],
        [max(0, a.ts_ms) for a in batch],
        [a.received_ms or max(0, a.ts_ms) for a in batch],
        [dumps(a.detail).decode() for a in batch],
    ]


ACTIONS: TableSpec[ActionRecord] = TableSpec(
    table="actions",
    columns=tuple(
        [
            "action_id",
            "journey_id",
            "journey_version",
            "node_id",
            "profile_id",
            "channel",
            "template",
            "variant",
            "status",
            "reason",
            "trigger_event_id",
            "ts",
            "received_at",
            "detail",
        ]
    ),
    to_columns=_action_columns,
    times=lambda a: (a.received_ms or a.ts_ms, a.ts_ms),
)
