"""The guards every outgoing journey action passes: consent, suppression, dedupe and
frequency caps, decided and recorded atomically in Redis by one Lua script
(``rules/guards.lua``). What the requests, decisions, caps and keys are is
`rules.policy`; this module is the Redis side: `Guards.decide`, `mark_delivered`, and the
suppression and consent records written from the stream (`record_consent`, in event time,
and its shorthands `unsubscribe` and `set_consent`).

Guarantees
----------
- **Atomic**: all decisions of one profile in one ``Guards.decide`` call are one Lua
  script call (``rules/guards.lua``, every key it touches declared and under the same
  ``{pid}``): check and record happen with nothing in between, so concurrent deciders
  (threads, processes, machines) never exceed a cap. Actions of one profile in one call
  are decided in order and see each other's effects. The calls of several profiles go
  in one pipeline (on Redis Cluster, one call after the other, each to its shard).
- **Idempotent**: an ``action_id`` that already has a decision record gets that decision
  back with ``replay=True`` and changes nothing, so a retry or a replay after a crash never
  counts a cap twice. This is what makes retrying a timed-out call safe (an action the
  lost call had already decided then comes back with ``replay=True``).
- **Delivered at least once**: a ``sent`` decided by an earlier call whose message the
  actions topic has not acknowledged (the engine died between deciding and the broker's
  ack, or the call's reply was lost) comes back with ``unacked=True``, and the caller
  delivers it again; once ``mark_delivered`` has recorded the ack, a replay delivers
  nothing. A repeat within one call is not unacked (it is the same delivery).
- **Windows in event time**: cap and dedupe windows are measured with the requests'
  ``now_ms`` (event time), so a full-speed replay of history decides like live traffic;
  the PX TTLs are wall-clock garbage collection only. An action whose ``now_ms`` is older
  than entries already counted sees those newer entries too (conservative: it may be
  capped, never over-sent).
- **Never a silent drop**: each call has the client's socket timeout; connection errors
  and timeouts are retried with exponential backoff (``sinks.retry.RetryPolicy``, one
  warning per attempt), then ``flows.core.errors.SinkError`` is raised. Any other Redis error
  raises ``SinkError`` at once. No decision is returned without its guards.

Quiet hours (`rules.calendar.quiet_hours_decision`) and the complaint breaker
(`rules.breaker`) are decided by the caller before ``decide``; an action they hold back
never reaches the script.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from flows.core import metrics
from flows.core.durations import format_duration
from flows.core.errors import SinkError
from rules.journeys.model import CHANNELS
from rules.policy import (
    ActionRequest,
    Decision,
    cap_key,
    consent_key,
    decision_key,
    dedupe_key,
    suppress_at_key,
    suppress_key,
)
from sinks.redis_store import connect, text
from sinks.retry import RetryPolicy

log = logging.getLogger("scrm.guards")

SCRIPT_PATH = Path(__file__).with_name("guards.lua")
CONSENT_SCRIPT = Path(__file__).with_name("consent.lua").read_text(encoding="utf-8")
T = TypeVar("T")


# --- the script call ----------------------------------------------------------------------


class _Call:
    """KEYS and ARGV of one script call: the actions of one profile, in order."""

    def __init__(self, profile_id: str, requests: list[ActionRequest]) -> None:
        self.profile_id = profile_id
        self.keys: list[str] = [consent_key(profile_id), suppress_key(profile_id)]
        self._index: dict[str, int] = {}
        longest: dict[str, int] = {}
        for r in requests:
            for c in r.caps:
                if c.applies_to(r.channel):
                    k = cap_key(profile_id, c.scope, c.channel, r.journey_id)
                    longest[k] = max(longest.get(k, 0), c.window_ms)
        actions = []
        for r in requests:
            decision = self._key(decision_key(profile_id, r.action_id))
            caps = []
            for c in r.caps:
                if not c.applies_to(r.channel):
                    continue
                k = cap_key(profile_id, c.scope, c.channel, r.journey_id)
                caps.append(
                    {
                        "k": self._key(k),
                        "n": c.count,
                        "cut": str(r.now_ms - c.window_ms),
                        "trim": str(r.now_ms - longest[k]),
                        "keep": str(longest[k]),
                        "r": c.reserve,
                        "rp": c.reserve_priority,
                        "l": c.label,
                    }
                )
            dedupe = r.dedupe_window_ms > 0
            actions.append(
                {
                    "id": r.action_id,
                    "d": decision,
                    "ttl": str(r.decision_ttl_ms),
                    "ch": r.channel,
                    "pr": r.priority,
                    "now": str(r.now_ms),
                    "h": 1 if r.holdout else 0,
                    "dk": self._key(dedupe_key(profile_id, r.template)) if dedupe else 0,
                    "dw": str(r.dedupe_window_ms),
                    "dl": f"{r.template}:{format_duration(r.dedupe_window_ms)}" if dedupe else "",
                    "caps": caps,
                }
            )
        self.args = [orjson.dumps(actions)]
        slots = {key_slot(k.encode("utf-8")) for k in self.keys}
        if len(slots) != 1:  # Redis Cluster: one call, one slot
            raise AssertionError(f"guard keys of {profile_id!r} span slots {sorted(slots)}")

    def _key(self, key: str) -> int:
        """The 1-based KEYS index of ``key``, adding it once."""
        if key not in self._index:
            self.keys.append(key)
            self._index[key] = len(self.keys)
        return self._index[key]


def retried(retry: RetryPolicy, fn: Callable[[], T], what: str) -> T:
    """`fn` with connection errors and timeouts retried by `retry`; any Redis error left
    (or the retries spent) raises ``SinkError`` naming `what`."""
    try:
        return retry.call(fn, what, retry_on=(redis.ConnectionError, redis.TimeoutError))
    except redis.RedisError as exc:
        log.error("%s failed: %s", what, exc)
        raise SinkError(f"{what} failed: {exc}") from exc


def _socket_timeout(client: redis.Redis | RedisCluster) -> float | None:
    if isinstance(client, RedisCluster):
        return client.nodes_manager.connection_kwargs.get("socket_timeout")
    return client.connection_pool.connection_kwargs.get("socket_timeout")


class Guards:
    """Decides batches of ``ActionRequest`` s against Redis or Redis Cluster (see the module
    docstring). Thread-safe: redis-py clients are, and each ``decide`` builds its own calls.
    """

    def __init__(self, client: redis.Redis | RedisCluster, retry: RetryPolicy | None = None) -> None:
        if _socket_timeout(client) is None:
            raise ValueError("the guards' Redis client needs a socket_timeout: no call may hang")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._retry = retry or RetryPolicy()
        self._script = client.register_script(SCRIPT_PATH.read_text(encoding="utf-8"))
        self._retries = metrics.SINK_RETRIES.labels(sink="redis:guards")

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 2.0, retry: RetryPolicy | None = None) -> Guards:
        """A client with a socket timeout (`sinks.redis_store.connect`). A single server's
        client has no retries of its own (the ``RetryPolicy`` is the one retry layer, and
        it logs every attempt); a Cluster client (a ``redis+cluster://`` URL) keeps
        redis-py's, which follow slot moves."""
        return cls(connect(url, timeout_s, own_retries=False, retry=retry), retry)

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The client the guards use (for `unsubscribe` / `set_consent` from the stream)."""
        return self._client

    def close(self) -> None:
        self._client.close()

    def decide(self, requests: Sequence[ActionRequest]) -> list[Decision]:
        """One decision per request, in the requests' order: one script call per profile,
        all of them in one pipeline (on Redis Cluster, where redis-py does not pipeline
        scripts, one call after the other, each on its profile's shard). Raises
        ``SinkError`` when Redis stays unreachable."""
        if not requests:
            return []
        by_profile: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_profile.setdefault(r.profile_id, []).append(i)
        calls = [(_Call(pid, [requests[i] for i in idx]), idx) for pid, idx in by_profile.items()]
        what = f"decide the guards of {len(requests)} actions for {len(calls)} profiles"

        def _run() -> list[Any]:
            if self._cluster:
                return [self._script(keys=call.keys, args=call.args) for call, _ in calls]
            pipe = self._client.pipeline(transaction=False)
            for call, _ in calls:
                self._script(keys=call.keys, args=call.args, client=pipe)
            return pipe.execute()

        def _once() -> list[Any]:
            try:
                try:
                    return _run()
                except redis.exceptions.NoScriptError:
                    # The script cache was flushed (restart, failover, another Cluster node)
                    # between the pipeline's check and its run: load it and run the batch
                    # again, which is safe because decided actions are replayed.
                    self._client.script_load(self._script.script)
                    return _run()
            except (redis.ConnectionError, redis.TimeoutError):
                self._retries.inc()
                raise

        results = retried(self._retry, _once, what)
        decisions: list[Decision | None] = [None] * len(requests)
        for (_, idx), flat in zip(calls, results, strict=True):
            for n, i in enumerate(idx):
                status, reason, replay = flat[3 * n : 3 * n + 3]
                decisions[i] = Decision(
                    requests[i].action_id, text(status), text(reason), int(replay) > 0, int(replay) == 2
                )
        return [d for d in decisions if d is not None]


def mark_delivered(
    client: redis.Redis | RedisCluster,
    sends: Sequence[tuple[str, str]],
    retry: RetryPolicy | None = None,
) -> None:
    """Record that the actions topic acknowledged these sends (``(profile_id, action_id)``):
    their decision records lose ``|pending`` (``SET ... XX KEEPTTL``: an expired or unknown
    record is not created, its TTL is unchanged), so a later replay delivers them no more.
    One pipeline; raises ``SinkError`` when Redis stays unreachable."""
    if not sends:
        return

    def _once() -> None:
        pipe = client.pipeline(transaction=False)
        for pid, aid in sends:
            pipe.set(decision_key(pid, aid), "sent|ok", xx=True, keepttl=True)
        pipe.execute()

    retried(retry or RetryPolicy(), _once, f"mark {len(sends)} sends as delivered")


# --- state from the stream ----------------------------------------------------------------


CONSENT_OPS = ("grant", "revoke", "suppress")
SUPPRESSION_KINDS = ("unsubscribe", "complaint")


def record_consent(
    client: redis.Redis | RedisCluster,
    profile_id: str,
    op: str,
    channel: str | None,
    ts_ms: int | None = None,
    version: str = "",
    event_id: str = "",
    retry: RetryPolicy | None = None,
    kind: str = "unsubscribe",
) -> str:
    """Record, as of event time `ts_ms` (default: now), that the profile granted
    (``grant``) or refused (``revoke``) contact on `channel` (None: every channel), or that
    it unsubscribed or complained (``suppress``, `kind` says which). One script call
    (``rules/consent.lua``):

    - consent records are ordered by event time, a refusal after a grant at the same time
      (a tie never widens contact), then by event id; the newest of a channel's record and
      the every-channel record decides. An older record changes nothing and comes back
      ``"stale"``; a record for every channel replaces the channels' own older ones;
    - a grant (a re-subscribe) lifts the unsubscribes strictly older than it, of its
      channel or, for every channel, all of them: a do-not-contact is lifted only by the
      latter. A complaint is never lifted from the stream, nor a suppression recorded
      without a time;
    - an unsubscribe older than a grant of its channel or of every channel is stale (the
      customer re-subscribed after it, and that event arrived first); a complaint never is;
    - applying a record again changes nothing.

    Returns ``"applied"`` or ``"stale"``."""
    if op not in CONSENT_OPS:
        raise ValueError(f"op must be one of {CONSENT_OPS}, not {op!r}")
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS} or None, not {channel!r}")
    if kind not in SUPPRESSION_KINDS:
        raise ValueError(f"kind must be one of {SUPPRESSION_KINDS}, not {kind!r}")
    when = int(time.time() * 1000) if ts_ms is None else ts_ms
    keys = [consent_key(profile_id), suppress_key(profile_id), suppress_at_key(profile_id)]
    args = [op, channel or "*", str(when), version, event_id, kind]
    script = client.register_script(CONSENT_SCRIPT)
    what = f"record {op} of {profile_id} on {channel or 'every channel'}"
    return text(retried(retry or RetryPolicy(), lambda: script(keys=keys, args=args), what))


def unsubscribe(
    client: redis.Redis | RedisCluster,
    profile_id: str,
    channel: str | None = None,
    retry: RetryPolicy | None = None,
    ts_ms: int | None = None,
    event_id: str = "",
    kind: str = "unsubscribe",
) -> str:
    """Suppress one channel for the profile, or every channel (do-not-contact) with None,
    as of event time `ts_ms`, for an unsubscribe or a complaint (see `record_consent`)."""
    return record_consent(client, profile_id, "suppress", channel, ts_ms, "", event_id, retry, kind)


def set_consent(
    client: redis.Redis | RedisCluster,
    profile_id: str,
    channel: str | None,
    granted: bool,
    retry: RetryPolicy | None = None,
    ts_ms: int | None = None,
    version: str = "",
) -> str:
    """Record the profile's consent (or refusal) for one channel, or every channel with
    None (see `record_consent`)."""
    return record_consent(
        client, profile_id, "grant" if granted else "revoke", channel, ts_ms, version, "", retry
    )
