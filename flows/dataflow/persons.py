"""Routing by person: each accepted event is resolved to the person its identifiers belong
to (`sinks.identity_graph`, one script call per batch) before the per-profile step keys
by it.

An event keeps the ``profile_id`` it arrived with and gains ``person_id``; its
identifiers are its keyed hashes (phones and emails under their kind, so ``mobile`` and
``phone`` are one) and, when it named one, its ``profileId``. A merge the event caused
sends the profile step two notices ahead of the event (the loser hands its state off,
the winner takes it in; see `flows.dataflow.profile_step`) and becomes a
``profile_merged`` event of the winner (deterministic id: a replay writes the
same row), and every identifier whose owner changed becomes an `IdentityChange` (the
``identities`` table). Each record's answer is remembered under its source position, so
a replay after a crash routes it as the first time (see `sinks.identity_graph`).
"""

from __future__ import annotations

from typing import NamedTuple

from flows.core import metrics
from flows.core.contract import ENGINE, Event, engine_event
from flows.core.identifiers import PROFILE_ID, graph_name
from flows.core.messages import IdentityChange, Intent
from flows.core.pii import profile_from_hashes
from flows.core.settings import IdentitySettings
from flows.dataflow.profile_step import ABSORB, HANDOFF
from sinks.identity_graph import Identifier, IdentityGraph, Position
from sinks.redis_store import connect
from sinks.retry import RetryPolicy

MERGED = "profile_merged"


class Routed(NamedTuple):
    """One batch, resolved: the events with their person, the merges they caused (as the
    winners' ``profile_merged`` events) and the identifiers that changed owner."""

    events: list[Event]
    merges: list[Event]
    identities: list[IdentityChange]


def identifiers_of(event: Event) -> list[Identifier]:
    """What the graph knows `event` by: its keyed identifier hashes, and its profileId
    when it named one (a profile id derived from its identifiers is not one more)."""
    out = [Identifier(graph_name(n), h) for n, h in event.pii_hashes.items() if not n.startswith("props.")]
    pid = event.profile_id
    if pid and (not pid.startswith("id:") or pid != profile_from_hashes(event.identifiers, event.pii_hashes)):
        out.append(Identifier(PROFILE_ID, pid))
    return out


_FIELDS = len(Event._fields) - 1
assert Event._fields[_FIELDS] == "person_id"  # the last field


def _with_person(e: Event, person: str) -> Event:
    """`e` routed to `person` (``_replace`` without its keyword machinery)."""
    return Event._make((*e[:_FIELDS], person))


def _notice(e: Event, kind: str, key: str, merge_id: str, other: str) -> Event:
    """A hand-off notice keyed to `key`, at `e`'s time and source position (so it moves
    stream time as `e` does)."""
    props = {"mergeId": merge_id, "other": other}
    return e._replace(
        event_id=f"{kind}:{merge_id}", profile_id=key, type=kind, props=props, identifiers={},
        pii_hashes={}, origin=ENGINE, person_id=key,
    )  # fmt: skip


def merge_intent(merged: Event) -> Intent:
    """The guards' part of a merge (a ``profile_merged`` event): fold the loser's records
    into the winner's (`rules.person_merge`), in stream order."""
    p = merged.props
    return Intent(
        "merge", str(p["mergeId"]), merged.profile_id, "", 0, "", "", "", "", 0, merged.event_id,
        merged.ts_ms, merged.received_ms, {"merged": p["merged"]},
    )  # fmt: skip


class ResolvePersons:
    """``flat_map_batch`` logic: events in, one `Routed` out per batch. The client is opened
    on first use, on the worker that runs it; connection errors are retried by the
    `RetryPolicy`, then fail the flow (an event is never routed by a guess)."""

    def __init__(self, url: str, timeout_s: float, retry: RetryPolicy, settings: IdentitySettings) -> None:
        self._url = url
        self._timeout = timeout_s
        self._retry = retry
        self._settings = settings
        self._graph: IdentityGraph | None = None

    def _open(self) -> IdentityGraph:
        s = self._settings
        client = connect(self._url, self._timeout, own_retries=False, retry=self._retry)
        return IdentityGraph(
            client, self._retry, s.limits, memo_records=s.memo_records, memo_ttl_s=s.memo_ttl_s
        )

    def __call__(self, batch: list[Event]) -> list[Routed]:
        graph = self._graph
        if graph is None:
            graph = self._graph = self._open()
        asks = []
        at = []
        for e in batch:
            asks.append((e.ts_ms, identifiers_of(e)))
            at.append(Position(e.origin, e.partition, e.offset, e.event_id))
        events: list[Event] = []
        merges: list[Event] = []
        changes: list[IdentityChange] = []
        for e, r in zip(batch, graph.resolve(asks, at), strict=True):
            person = r.person
            for m in r.merges:  # the states merge before the record that merged them
                events.append(_notice(e, HANDOFF, m.loser, m.merge_id, m.winner))
                events.append(_notice(e, ABSORB, m.winner, m.merge_id, m.loser))
            events.append(_with_person(e, person))
            if not r.changed and not r.merges and not r.refused:
                continue
            for m in r.merges:
                props = {"mergeId": m.merge_id, "merged": m.loser, "via": e.event_id}
                merged = engine_event(
                    f"{MERGED}:{m.merge_id}", m.winner, MERGED, e.ts_ms, props, e.received_ms
                )
                merges.append(_with_person(merged, m.winner))
            for c in r.changed:
                changes.append(
                    IdentityChange(c.key, c.name, person, c.merge_id, c.seq, e.ts_ms, e.received_ms)
                )
            for i, why in r.refused:
                metrics.IDENTIFIERS_REFUSED.labels(name=i.name, reason=why).inc()
        if merges:
            metrics.PERSONS_MERGED.inc(len(merges))
        return [Routed(events, merges, changes)]
