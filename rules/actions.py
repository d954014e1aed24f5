"""From journey intents to decided actions: the guards in Redis, then the record of every
decision.

`GuardStep` is the dataflow's one I/O step in the middle: each batch of `Intent`s becomes
one `rules.guards.Guards.decide` call (one Lua script per profile, pipelined) for the sends
and holdouts, split where an unsubscribe or complaint suppresses a channel, so each send
is decided against the suppressions that came before it in the stream; tasks, tickets
and quiet-hours deferrals need no guard. Every intent comes out as an `ActionRecord` —
sent or not, with its reason — for ClickHouse ``actions``; the ones to carry out
(``sent``, ``task``, ``ticket``) also go to the Kafka topic ``scrm.actions`` keyed by
profile. Redis down: the guards retry with backoff and then fail the run (``SinkError``);
no action leaves without its guards. After each batch the complaint breaker
(`rules.breaker`) counts sends and complaints and pauses a journey over its rate.

With routing by person (``persons``) a batch is guarded in event-time order (stable), so
the intents of two aliases and of their merge, which the per-profile step emits key by
key, are decided in the order they happened whatever the batching (within a partition;
across partitions the stream has no order). A merge's intent folds the loser's guard
records into the winner's (`rules.person_merge`), in that order like a suppression; an
intent of a person merged before is decided for the person it belongs to now, unless it
was decided before under its own id (a replay finds that decision).
"""

from __future__ import annotations

from typing import Any

import orjson

from flows.core import metrics
from flows.core.durations import parse_duration
from flows.core.messages import ActionRecord, Intent
from flows.core.settings import JourneySettings
from rules.breaker import Breaker
from rules.guards import Guards, mark_delivered, record_consent, retried, unsubscribe
from rules.journeys.model import Journey
from rules.live import LiveJourneys
from rules.person_merge import merge_records
from rules.policy import ActionRequest, Cap, decision_key
from sinks.identity_graph import IdentityGraph
from sinks.kafka import OutMessage
from sinks.redis_store import connect
from sinks.retry import RetryPolicy

DELIVER = frozenset({"sent", "task", "ticket"})


def profile_caps(settings: JourneySettings) -> tuple[Cap, ...]:
    """The caps on every profile across all journeys, from settings."""
    return tuple(
        Cap("profile", c.get("channel"), int(c["count"]), parse_duration(c["per"]), int(c.get("reserve", 0)),
            int(c.get("reserve_priority", 0)))
        for c in settings.caps
    )  # fmt: skip


def caps_for(j: Journey, profile: tuple[Cap, ...]) -> tuple[Cap, ...]:
    """The profile-wide caps plus the journey's own: the one place a declared
    `JourneyCap` becomes a journey-scope `rules.policy.Cap`."""
    return profile + tuple(Cap("journey", c.channel, c.count, c.per_ms) for c in j.caps)


class GuardStep:
    """``flat_map_batch`` logic: intents in, decided `ActionRecord`s out (one Redis round
    trip per batch). The client is opened on first use, on the worker that runs it."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        retry: RetryPolicy,
        settings: JourneySettings,
        catalog: LiveJourneys,
        persons: bool = False,
    ) -> None:
        self._persons = persons
        self._graph: IdentityGraph | None = None
        self._url = url
        self._timeout = timeout_s
        self._retry = retry
        self._settings = settings
        self._catalog = catalog
        self._guards: Guards | None = None
        self._breaker: Breaker | None = None
        self._profile_caps = profile_caps(settings)
        self._caps: dict[tuple[str, int], tuple[Cap, ...]] = {}  # per journey version, built once

    def __call__(self, batch: list[Intent]) -> list[ActionRecord]:
        if self._guards is None:
            self._guards = Guards.from_url(self._url, self._timeout, self._retry)
            b = self._settings.breaker
            self._breaker = Breaker(
                self._guards.client, float(b.get("max_complaint_rate", 0.05)), str(b.get("window", "1d")),
                int(b.get("min_sends", 50)), self._retry,
            )  # fmt: skip
        s = self._settings
        guards = self._guards
        earlier: dict[int, ActionRecord] = {}
        if self._persons:
            batch, earlier = self._to_persons(batch)
        requests: list[ActionRequest] = []
        guarded: list[int] = []
        out: list[ActionRecord | None] = []

        def decide() -> None:
            if requests:
                for i, d in zip(guarded, guards.decide(requests), strict=True):
                    out[i] = _record(batch[i], d.status, d.reason, d.replay, d.unacked)
                requests.clear()
                guarded.clear()

        for i, it in enumerate(batch):
            if it.kind == "suppress":
                # in stream order: sends before the unsubscribe are decided first, later ones see it
                decide()
                done = unsubscribe(
                    guards.client,
                    it.profile_id,
                    it.channel or None,
                    self._retry,
                    it.ts_ms,
                    it.trigger_event_id,
                    it.template,  # the event type: unsubscribe or complaint
                )
                if done == "applied":
                    metrics.SUPPRESSIONS.labels(kind=it.template).inc()
                metrics.CONSENT_RECORDS.labels(op="suppress", outcome=done).inc()
                out.append(None)
            elif it.kind == "consent":
                decide()  # in stream order, like a suppression
                op = "grant" if it.template == "consent_granted" else "revoke"
                if op == "grant" and "unknown" in it.detail:
                    done = "ignored"  # never widen consent on a channel name nobody knows
                else:
                    done = record_consent(
                        guards.client, it.profile_id, op, it.channel or None, it.ts_ms,
                        str(it.detail.get("version", "")), it.trigger_event_id, self._retry,
                    )  # fmt: skip
                metrics.CONSENT_RECORDS.labels(op=op, outcome=done).inc()
                out.append(None)
            elif it.kind == "complaint":
                out.append(None)
            elif it.kind == "merge":
                decide()  # in stream order, like a suppression
                loser = str(it.detail["merged"])
                merge_records(guards.client, loser, it.profile_id, it.ts_ms, it.action_id, self._retry)
                out.append(None)
            elif i in earlier:
                out.append(earlier[i])
            elif it.kind in ("send", "holdout"):
                key = (it.journey_id, it.journey_version)
                caps = self._caps.get(key)
                if caps is None:
                    caps = self._caps[key] = caps_for(self._catalog.version(*key), self._profile_caps)
                requests.append(
                    ActionRequest(
                        it.action_id, it.profile_id, it.journey_id, it.journey_version, it.node_id,
                        it.channel or "push", it.template or "holdout", it.priority, max(0, it.ts_ms),
                        caps, int(s.dedupe_window_s * 1000), int(s.decision_ttl_s * 1000),
                        holdout=it.kind == "holdout",
                    )
                )  # fmt: skip
                guarded.append(i)
                out.append(None)
            else:
                reason = "until:" + str(it.detail.get("until_ms", "")) if it.kind.startswith("quiet") else ""
                out.append(_record(it, it.kind, reason, False))
        decide()
        records = [r for r in out if r is not None]
        assert self._breaker is not None
        sends = [(r.journey_id, r.ts_ms) for r in records if r.status == "sent" and not r.replay]
        complaints = [(it.journey_id, it.ts_ms) for it in batch if it.kind == "complaint"]
        for trip in self._breaker.record(sends, complaints):
            blamed = next(it for it in batch if it.kind == "complaint" and it.journey_id == trip.journey_id)
            reason = f"complaints:{trip.complaints}/{trip.sends}"
            records.append(_record(blamed, "breaker_tripped", reason, False))
        for r in records:
            metrics.DECISIONS.labels(journey=r.journey_id, status=r.status).inc()
        return records

    def _to_persons(self, batch: list[Intent]) -> tuple[list[Intent], dict[int, ActionRecord]]:
        """`batch` in event-time order (stable), each intent of a merged person sent to the
        person it belongs to now, and, by position, the records of those decided before
        under either id (a replay, however the batches fell then). A loser whose merge is
        in this batch keeps its own id until the merge's intent, so its earlier intents
        count under it and are folded in."""
        assert self._guards is not None
        client = self._guards.client
        if self._graph is None:
            self._graph = IdentityGraph(client, self._retry)
        batch = sorted(batch, key=_event_time)
        ids = {str(it.detail["merged"]) if it.kind == "merge" else it.profile_id for it in batch}
        now = self._graph.persons_now(ids)
        if not now:
            return batch, {}
        merging = {str(it.detail["merged"]) for it in batch if it.kind == "merge"}
        out = list(batch)
        aliased: list[int] = []  # sends and holdouts of a merged person
        for i, it in enumerate(batch):
            if it.kind == "merge":
                loser = str(it.detail["merged"])
                merging.discard(loser)
                target = now.get(loser)
                if target is not None and target != it.profile_id:
                    out[i] = it._replace(profile_id=target)
                continue
            if it.profile_id not in now:
                continue
            if it.kind in ("send", "holdout"):
                aliased.append(i)
            if it.profile_id not in merging:
                out[i] = it._replace(profile_id=now[it.profile_id])
        earlier: dict[int, ActionRecord] = {}
        if aliased:

            def read() -> list[Any]:
                pipe = client.pipeline(transaction=False)
                for i in aliased:
                    it = batch[i]
                    pipe.get(decision_key(it.profile_id, it.action_id))
                    pipe.get(decision_key(now[it.profile_id], it.action_id))
                return pipe.execute()

            got = retried(self._retry, read, "read earlier decisions")
            for n, i in enumerate(aliased):
                for it, found in (
                    (batch[i], got[2 * n]),
                    (batch[i]._replace(profile_id=now[batch[i].profile_id]), got[2 * n + 1]),
                ):
                    if found is not None:  # decided before: replay that, unchanged, under its id
                        status, reason, *rest = (found.decode() if isinstance(found, bytes) else found).split(
                            "|"
                        )
                        earlier[i] = _record(it, status, reason, True, "pending" in rest)
                        break
        return out, earlier


def _event_time(it: Intent) -> int:
    return it.ts_ms


def _record(it: Intent, status: str, reason: str, replay: bool, unacked: bool = False) -> ActionRecord:
    return ActionRecord(
        it.action_id, it.journey_id, it.journey_version, it.node_id, it.profile_id, it.channel, it.template,
        it.variant, status, reason, it.trigger_event_id, it.ts_ms, it.received_ms, it.detail, replay, unacked,
    )  # fmt: skip


def is_delivered(r: ActionRecord) -> bool:
    """Whether the action goes to the actions topic: sends, tasks and tickets, except a
    replayed send whose message was acknowledged before (senders deduplicate on
    ``action_id`` whatever is delivered twice)."""
    return r.status in DELIVER and (not r.replay or r.unacked)


class DeliveryMarks:
    """The actions sink's ack hook: records in Redis that the topic acknowledged these sends
    (`rules.guards.mark_delivered`), so a replay after a crash re-delivers exactly the sends
    whose ack it never saw. Tasks and tickets have no decision record: a replay delivers
    them again. The client is opened on first use (one per hook, shared by the sink
    partitions that call it; redis-py clients are thread-safe)."""

    def __init__(self, url: str, timeout_s: float, retry: RetryPolicy) -> None:
        self._url = url
        self._timeout = timeout_s
        self._retry = retry
        self._client: Any = None

    def __call__(self, records: list[ActionRecord]) -> None:
        sends = [(r.profile_id, r.action_id) for r in records if r.status == "sent"]
        if not sends:
            return
        if self._client is None:
            self._client = connect(self._url, self._timeout, own_retries=False, retry=self._retry)
        mark_delivered(self._client, sends, self._retry)


def action_message(r: ActionRecord) -> OutMessage:
    """An action on ``scrm.actions``: keyed by profile; senders deduplicate on action_id."""
    payload = {
        "actionId": r.action_id, "profileId": r.profile_id, "journeyId": r.journey_id,
        "journeyVersion": r.journey_version, "nodeId": r.node_id, "kind": r.status, "channel": r.channel,
        "template": r.template, "variant": r.variant, "triggerEventId": r.trigger_event_id, "ts": r.ts_ms,
        "receivedAt": r.received_ms, "detail": r.detail,
    }  # fmt: skip
    return OutMessage(r.profile_id.encode(), orjson.dumps(payload), [("action_id", r.action_id.encode())])
