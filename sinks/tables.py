"""How the engine's records become rows of the ClickHouse tables defined in ``sql/``.

Each table is a list of (column, getter) pairs; a batch becomes one list per column
(``map`` over the batch: a plain field is read by a C-level ``attrgetter``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter as field
from typing import Any, TypeVar

import orjson

from flows.core.contract import DeadLetter, Event
from flows.core.messages import ActionRecord, FeatureUpdate, IdentityChange, ModelMetric, Score
from sinks.clickhouse import TableSpec

T = TypeVar("T")
_dumps = orjson.dumps


def table(
    name: str,
    columns: Sequence[tuple[str, Callable[[T], Any]]],
    times: Callable[[T], tuple[int, int]] | None = None,
) -> TableSpec[T]:
    """A `TableSpec` from its columns in table order, each with how an item fills it."""
    getters = tuple(get for _, get in columns)

    def to_columns(batch: Sequence[T]) -> list[list[Any]]:
        return [list(map(get, batch)) for get in getters]

    return TableSpec(name, tuple(c for c, _ in columns), to_columns, times)


EVENTS: TableSpec[Event] = table(
    "events",
    [
        ("event_id", field("event_id")),
        ("profile_id", field("profile_id")),
        ("person_id", lambda e: e.person_id or e.profile_id),
        ("type", field("type")),
        ("source", field("source")),
        ("ts", field("ts_ms")),
        ("ingested_at", field("received_ms")),
        ("props", lambda e: _dumps(e.props).decode() if e.props else "{}"),
        ("identifiers", field("identifiers")),
        ("pii_hashes", field("pii_hashes")),
        ("origin", field("origin")),
        ("src_partition", field("partition")),
        ("src_offset", field("offset")),
        ("late", lambda e: 1 if e.late else 0),
    ],
    times=lambda e: (e.received_ms, e.ts_ms),
)

DEAD_LETTERS: TableSpec[DeadLetter] = table(
    "dead_letters",
    [
        ("received_at", field("received_ms")),
        ("reason", field("reason")),
        ("detail", field("detail")),
        ("raw", field("raw")),
        ("raw_size", field("raw_size")),
        ("raw_key", lambda d: d.key or b""),
        ("origin", field("origin")),
        ("src_partition", field("partition")),
        ("src_offset", field("offset")),
    ],
    times=lambda d: (d.received_ms, d.received_ms),
)

FEATURES: TableSpec[FeatureUpdate] = table(
    "features",
    [
        ("profile_id", field("profile_id")),
        ("ts", field("as_of_ms")),
        ("values", field("full")),
        ("tags", lambda u: list(u.tags or ())),
        ("segment", lambda u: u.segment or ""),
    ],
    times=lambda u: (u.received_ms or u.as_of_ms, u.as_of_ms),
)

SCORES: TableSpec[Score] = table(
    "scores",
    [
        ("model", field("model")),
        ("entity_id", field("entity_id")),
        ("profile_id", field("profile_id")),
        ("score", field("score")),
        ("model_version", field("version")),
        ("ts", field("as_of_ms")),
        ("explanation", lambda s: dict(s.explanation)),
        ("received_at", lambda s: s.received_ms or s.as_of_ms),
    ],
    times=lambda s: (s.received_ms or s.as_of_ms, s.as_of_ms),
)

MODEL_METRICS: TableSpec[ModelMetric] = table(
    "model_metrics",
    [
        ("model", field("model")),
        ("ts", field("ts_ms")),
        ("stream_ts", lambda m: max(0, m.stream_ms)),  # stream time is -1 before any event
        ("model_version", field("version")),
        ("n_learned", field("n_learned")),
        ("n_pending", field("n_pending")),
        ("n_dropped", field("n_dropped")),
        ("roc_auc", field("roc_auc")),
        ("log_loss", field("log_loss")),
        ("baseline_roc_auc", field("baseline_roc_auc")),
        ("baseline_log_loss", field("baseline_log_loss")),
        ("positive_rate", field("positive_rate")),
    ],
)

ACTIONS: TableSpec[ActionRecord] = table(
    "actions",
    [
        ("action_id", field("action_id")),
        ("journey_id", field("journey_id")),
        ("journey_version", field("journey_version")),
        ("node_id", field("node_id")),
        ("profile_id", field("profile_id")),
        ("channel", field("channel")),
        ("template", field("template")),
        ("variant", field("variant")),
        ("status", field("status")),
        ("reason", field("reason")),
        ("trigger_event_id", field("trigger_event_id")),
        ("ts", lambda a: max(0, a.ts_ms)),
        ("received_at", lambda a: a.received_ms or max(0, a.ts_ms)),
        ("detail", lambda a: _dumps(a.detail).decode()),
    ],
    times=lambda a: (a.received_ms or a.ts_ms, a.ts_ms),
)

IDENTITIES: TableSpec[IdentityChange] = table(
    "identities",
    [
        ("identifier", field("identifier")),
        ("kind", field("kind")),
        ("person_id", field("person_id")),
        ("merge_id", field("merge_id")),
        ("seq", field("seq")),
        ("ts", field("ts_ms")),
        ("received_at", lambda c: c.received_ms or c.ts_ms),
    ],
    times=lambda c: (c.received_ms or c.ts_ms, c.ts_ms),
)
