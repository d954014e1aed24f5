"""The dataflow's stages as Bytewax operators: ``(step_id, up, ...) -> streams``.

`ingest` turns raw records into accepted, deduplicated events keyed by profile, and
dead letters. Each stage is a thin shell around the pure logic in `flows.contract` and
`flows.dedupe`, plus its metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulBatchLogic

from flows.contract import DeadLetter, Event, RawRecord, Validator
from flows.dedupe import SeenIds
from flows.settings import DedupeSettings
from sinks import metrics

Clock = Callable[[], float]


@dataclass(frozen=True)
class IngestOut:
    """Accepted events keyed by profileId, and the dead letters."""

    events: KeyedStream[Event]
    dead_letters: Stream[DeadLetter]


class _ParseBatch:
    """Validates a batch against the contract with one clock reading; counts the outcome."""

    def __init__(self, validator: Validator, clock: Clock) -> None:
        self._validator = validator
        self._clock = clock
        self._accepted = metrics.EVENTS_ACCEPTED
        self._lag = metrics.EVENT_TIME_LAG

    def __call__(self, batch: list[RawRecord]) -> list[Event | DeadLetter]:
        now = self._clock()
        now_ms = int(now * 1000)
        parse = self._validator.parse
        out = [parse(rec, now_ms) for rec in batch]
        accepted = 0
        newest = 0
        for item in out:
            if type(item) is Event:
                accepted += 1
                if item.ts_ms > newest:
                    newest = item.ts_ms
            else:
                metrics.EVENTS_REJECTED.labels(reason=item.reason).inc()
        if accepted:
            self._accepted.inc(accepted)
            self._lag.set(max(0.0, now - newest / 1000))
        return out


class _DedupeLogic(StatefulBatchLogic[Event, Event, SeenIds]):
    """Per-profile eventId dedupe; the profile's state is dropped after it goes idle.

    The idle deadline is recomputed at most every tenth of the idle time, so the timer
    costs next to nothing per event.
    """

    def __init__(self, seen: SeenIds, idle_s: float, clock: Clock) -> None:
        self._seen = seen
        self._idle_s = idle_s
        self._clock = clock
        self._deadline_at = 0.0
        self._deadline: datetime | None = None
        self._refresh_deadline()

    def _refresh_deadline(self) -> None:
        now = self._clock()
        if now + self._idle_s - self._deadline_at > self._idle_s / 10:
            self._deadline_at = now + self._idle_s
            self._deadline = datetime.fromtimestamp(self._deadline_at, UTC)

    def on_batch(self, values: list[Event]) -> tuple[list[Event], bool]:
        first = self._seen.first_time
        out = [e for e in values if first(e.event_id, e.ts_ms)]
        if len(out) != len(values):
            metrics.EVENTS_DUPLICATE.inc(len(values) - len(out))
        self._refresh_deadline()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Event], bool]:
        return [], StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self._deadline

    def snapshot(self) -> SeenIds:
        import copy

        return copy.copy(self._seen)


def _is_event(item: Event | DeadLetter) -> bool:
    return type(item) is Event


def _profile_of(event: Event) -> str:
    return event.profile_id


@operator
def ingest(
    step_id: str,
    up: Stream[RawRecord],
    validator: Validator,
    dedupe: DedupeSettings,
    clock: Clock = time.time,
) -> IngestOut:
    """Validate, split off dead letters, key by profile, drop repeated eventIds."""
    parsed = op.flat_map_batch("parse", up, _ParseBatch(validator, clock))
    split = op.branch("split", parsed, _is_event)
    keyed = op.key_on("key_by_profile", split.trues, _profile_of)  # type: ignore[arg-type]
    ttl_ms = int(dedupe.ttl_s * 1000)

    def _builder(resume: SeenIds | None) -> _DedupeLogic:
        seen = resume if resume is not None else SeenIds(ttl_ms, dedupe.max_ids_per_profile)
        return _DedupeLogic(seen, dedupe.idle_evict_s, clock)

    events = op.stateful_batch("dedupe", keyed, _builder)
    return IngestOut(events, split.falses)  # type: ignore[arg-type]
