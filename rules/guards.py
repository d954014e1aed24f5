"""The guards every outgoing journey action passes: consent, suppression, dedupe and
frequency caps, decided and recorded atomically in Redis, plus quiet hours (pure time
arithmetic, decided before Redis is asked).

What a decision is
------------------
Each ``ActionRequest`` gets exactly one ``Decision``; its ``status`` is one of

=============  =====================================================================
``sent``       every guard passed; the caps and the dedupe mark now count it (reason ``ok``)
``no_consent`` the profile refused the channel (reason ``consent:<channel>``)
``suppressed`` do-not-contact (reason ``dnc``) or unsubscribed from the channel
               (``suppressed:<channel>``)
``deduped``    the same template reached the profile within ``dedupe_window_ms``
               (``dedupe:<template>:<window>``, e.g. ``dedupe:welcome:1d``)
``capped``     a frequency cap is full (``cap:<scope>:<channel|*>:<count>/<window>``, e.g.
               ``cap:profile:sms:2/1d``), or only its reserved slots are left and the
               journey's priority is below ``reserve_priority`` (the same with
               ``:reserved`` appended)
``holdout``    the action is in a holdout arm and would have been sent; it counts no cap
               and leaves no dedupe mark (reason ``holdout``). A holdout action that a
               guard refuses is recorded with that refusal, so that the holdout and the
               treatment arm are compared over the same eligible population.
=============  =====================================================================

The checks run in this order, the first refusal wins: recorded decision (replay),
consent, suppression, dedupe, caps (in the order the request lists them).

Redis key layout
----------------
Every key carries the profile's hash tag ``{pid}``, so one profile's keys live on one
Redis Cluster shard and one script call touches one slot (checked before each call).
Profile ids containing ``{`` or ``}`` are refused: they would break the tag.

``scrm:decision:{pid}:<action_id>``  string ``<status>|<reason>``, PX ``decision_ttl_ms``
    (default 30 days): the idempotency record of one action. A send is recorded with
    ``|pending`` appended until the actions topic acknowledges its message
    (``mark_delivered`` drops it, TTL kept); a record without it counts as delivered.
``scrm:consent:{pid}``  hash ``<channel> -> "1" | "0"``, no TTL. Only an explicit ``"0"``
    refuses a channel: a channel without a field is consented by default (opt-out model;
    the journey layer must record refusals with ``set_consent``).
``scrm:suppress:{pid}``  set of channel names, and ``*`` for do-not-contact, no TTL.
``scrm:dedupe:{pid}:<template>``  string: event time (ms) of the last send of that
    template to the profile, PX the dedupe window.
``scrm:cap:{pid}:profile:<channel|*>``  sorted set of the ``action_id`` s sent, scored by
    event time (ms): caps over all journeys of the profile (``*`` = all channels).
``scrm:cap:{pid}:journey:<channel|*>:<journey_id>``  the same, for one journey (all its
    versions).

A cap set's TTL is only ever extended, to the longest window a call declared for it.

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

Caps are checked against the sets they name, so a profile-scope cap only sees the sends
of actions that declared it: the journey layer should give every journey of a profile the
same profile-scope caps (one policy from the settings). A cap set's old entries are
trimmed to the longest window the current call declares for it; a shorter window declared
by one journey and a longer one by another, on the same set, would lose entries.

Quiet hours (``quiet_hours_decision``) and the complaint breaker are decided by the
caller before ``decide``; an action they hold back never reaches the script.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from flows.core import metrics
from flows.core.durations import DAY_MS, format_duration
from flows.core.errors import SinkError
from sinks.redis_store import connect
from sinks.retry import RetryPolicy

log = logging.getLogger("scrm.guards")

CHANNELS = ("sms", "email", "wecom", "push", "webhook")
SCOPES = ("profile", "journey")
STATUSES = ("sent", "capped", "suppressed", "no_consent", "deduped", "holdout")
DEFAULT_DECISION_TTL_MS = 30 * DAY_MS
SCRIPT_PATH = Path(__file__).with_name("guards.lua")
T = TypeVar("T")


# --- keys -------------------------------------------------------------------------------


def _tag(profile_id: str) -> str:
    if not profile_id or "{" in profile_id or "}" in profile_id:
        raise ValueError(f"profile id {profile_id!r} cannot be a Redis Cluster hash tag")
    return f"{{{profile_id}}}"


def decision_key(profile_id: str, action_id: str) -> str:
    """The idempotency record of one action.

    >>> decision_key("p42", "ab12")
    'scrm:decision:{p42}:ab12'
    """
    return f"scrm:decision:{_tag(profile_id)}:{action_id}"


def consent_key(profile_id: str) -> str:
    """The profile's consent per channel.

    >>> consent_key("p42")
    'scrm:consent:{p42}'
    """
    return f"scrm:consent:{_tag(profile_id)}"


def suppress_key(profile_id: str) -> str:
    """The profile's suppressed channels (``*`` = do-not-contact).

    >>> suppress_key("p42")
    'scrm:suppress:{p42}'
    """
    return f"scrm:suppress:{_tag(profile_id)}"


def dedupe_key(profile_id: str, template: str) -> str:
    """When ``template`` last reached the profile.

    >>> dedupe_key("p42", "welcome")
    'scrm:dedupe:{p42}:welcome'
    """
    return f"scrm:dedupe:{_tag(profile_id)}:{template}"


def cap_key(profile_id: str, scope: str, channel: str | None, journey_id: str | None = None) -> str:
    """The sorted set a cap counts in; ``channel=None`` means all channels.

    >>> cap_key("p42", "profile", None)
    'scrm:cap:{p42}:profile:*'
    >>> cap_key("p42", "journey", "sms", "onboarding")
    'scrm:cap:{p42}:journey:sms:onboarding'
    """
    base = f"scrm:cap:{_tag(profile_id)}:{scope}:{channel or '*'}"
    if scope == "journey":
        if not journey_id:
            raise ValueError("a journey-scope cap needs the journey id")
        return f"{base}:{journey_id}"
    return base


def action_id(journey_id: str, version: int, node_id: str, profile_id: str, trigger_event_id: str) -> str:
    """The deterministic id of one journey action: the first 32 hex digits of the sha256 of
    the journey id, version, node id, profile id and trigger event id joined by ``\\x1f``
    (the ASCII unit separator, which none of them contains). A replay of the same trigger
    produces the same id, so the guards count it once and senders can deduplicate on it.

    >>> action_id("onboarding", 3, "n1", "p42", "evt-1")
    'c003029228567e9d6290aa573ed79abf'
    """
    raw = "\x1f".join((journey_id, str(int(version)), node_id, profile_id, trigger_event_id))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


# --- requests and decisions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``count`` sends per ``window_ms`` of event time. ``scope="profile"`` counts
    the sends of all journeys to the profile, ``"journey"`` those of the requesting journey;
    ``channel=None`` counts every channel, otherwise the cap applies only to actions on
    that channel (a request may list the whole policy). The last ``reserve`` slots are kept
    for journeys with ``priority >= reserve_priority``."""

    scope: str
    channel: str | None
    count: int
    window_ms: int
    reserve: int = 0
    reserve_priority: int = 0

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"cap scope must be one of {SCOPES}, not {self.scope!r}")
        if self.channel is not None and self.channel not in CHANNELS:
            raise ValueError(f"cap channel must be one of {CHANNELS} or None, not {self.channel!r}")
        if self.count < 0 or self.window_ms <= 0:
            raise ValueError(f"a cap needs count >= 0 and window_ms > 0: {self}")
        if not 0 <= self.reserve <= self.count or not 0 <= self.reserve_priority <= 100:
            raise ValueError(f"a cap needs 0 <= reserve <= count and 0 <= reserve_priority <= 100: {self}")

    def applies_to(self, channel: str) -> bool:
        return self.channel is None or self.channel == channel

    @property
    def label(self) -> str:
        """``profile:sms:2/1d``: the cap in a reason."""
        return f"{self.scope}:{self.channel or '*'}:{self.count}/{format_duration(self.window_ms)}"


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One outgoing action to guard. ``now_ms`` is the event time the windows are measured
    with; ``decision_ttl_ms`` is how long the decision stays replayable."""

    action_id: str
    profile_id: str
    journey_id: str
    journey_version: int
    node_id: str
    channel: str
    template: str
    priority: int
    now_ms: int
    caps: tuple[Cap, ...] = ()
    dedupe_window_ms: int = 0
    decision_ttl_ms: int = DEFAULT_DECISION_TTL_MS
    holdout: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.caps, tuple):
            object.__setattr__(self, "caps", tuple(self.caps))
        _tag(self.profile_id)
        if not self.action_id or not self.journey_id or not self.template:
            raise ValueError(f"action_id, journey_id and template are required: {self}")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {self.channel!r}")
        if not 0 <= self.priority <= 100:
            raise ValueError(f"priority must be 0..100, not {self.priority}")
        if self.now_ms < 0 or self.dedupe_window_ms < 0 or self.decision_ttl_ms <= 0:
            raise ValueError(f"need now_ms >= 0, dedupe_window_ms >= 0, decision_ttl_ms > 0: {self}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one action; ``replay`` is True when it was decided before (by an
    earlier call, a retried one, or earlier in the same batch) and nothing changed now."""

    action_id: str
    status: str
    reason: str
    replay: bool = False
    unacked: bool = False  # a replayed send the actions topic never acknowledged


# --- quiet hours --------------------------------------------------------------------------


def quiet_hours_decision(now_ms: int, tz_name: str, start_min: int, end_min: int) -> tuple[bool, int | None]:
    """Whether ``now_ms`` falls in the profile's quiet hours, and when they end.

    The quiet window is local wall-clock time ``[start_min, end_min)`` in minutes after
    midnight in ``tz_name``; ``start_min > end_min`` crosses midnight (21:00-08:00), and
    ``start_min == end_min`` means no quiet hours. Returns ``(True, end_ms)`` with the
    first instant after ``now_ms`` at which the local clock is out of the window (DST-aware:
    an end time skipped by a spring-forward gap ends the window when the clock jumps; an
    end time that occurs twice ends it the first time after ``now_ms``), else
    ``(False, None)``.

    >>> now = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    >>> quiet_hours_decision(now, "UTC", 21 * 60, 8 * 60)
    (True, 1700035200000)
    >>> quiet_hours_decision(now, "Asia/Shanghai", 21 * 60, 8 * 60)  # 06:13 local
    (True, 1700006400000)
    >>> quiet_hours_decision(now, "Europe/Berlin", 21 * 60, 8 * 60)  # 23:13 local
    (True, 1700031600000)
    >>> quiet_hours_decision(now, "America/New_York", 21 * 60, 8 * 60)  # 17:13 local
    (False, None)
    """
    for m in (start_min, end_min):
        if not 0 <= m < 1440:
            raise ValueError(f"quiet hours are minutes after midnight (0..1439), not {m}")
    if start_min == end_min:
        return False, None
    tz = ZoneInfo(tz_name)
    window_end = _quiet_until(now_ms, tz, start_min, end_min)
    if window_end is None:
        return False, None
    for _ in range(3):  # a DST gap may skip the whole time between the end and the next start
        later = _quiet_until(window_end, tz, start_min, end_min)
        if later is None:
            break
        window_end = later
    return True, window_end


def _quiet_until(ms: int, tz: ZoneInfo, start_min: int, end_min: int) -> int | None:
    """None when the local clock at ``ms`` is out of the window, else the next end time."""
    local = datetime.fromtimestamp(ms / 1000, tz)
    minute = local.hour * 60 + local.minute
    if start_min < end_min:
        if not start_min <= minute < end_min:
            return None
        end_day = local.date()
    else:
        if end_min <= minute < start_min:
            return None
        end_day = local.date() + timedelta(days=1) if minute >= start_min else local.date()
    return _first_instant_at_wall(end_day, end_min, tz, ms)


def _first_instant_at_wall(day: date, minute: int, tz: ZoneInfo, after_ms: int) -> int:
    """The first instant (epoch ms) after ``after_ms`` at which the local clock of ``tz``
    reads ``day`` ``minute`` or, when a DST gap skips that time, jumps past it."""
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz).replace(tzinfo=None)
    instants = [int(wall.replace(tzinfo=tz, fold=fold).timestamp()) for fold in (0, 1)]
    real = [s * 1000 for s in instants if datetime.fromtimestamp(s, tz).replace(tzinfo=None) == wall]
    if real:
        later = [ms for ms in real if ms > after_ms]
        if not later:
            raise AssertionError(f"{wall} {tz} is not after {after_ms}")  # pragma: no cover
        return min(later)
    # A spring-forward gap skips this wall time: the clock passes it at the transition,
    # which lies between the two readings of the nonexistent time. Find its second.
    lo, hi = min(instants), max(instants)  # the clock reads < wall at lo, > wall at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) < wall:
            lo = mid
        else:
            hi = mid
    return hi * 1000


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
        self.args = [json.dumps(actions, separators=(",", ":"))]
        slots = {key_slot(k.encode("utf-8")) for k in self.keys}
        if len(slots) != 1:  # Redis Cluster: one call, one slot
            raise AssertionError(f"guard keys of {profile_id!r} span slots {sorted(slots)}")

    def _key(self, key: str) -> int:
        """The 1-based KEYS index of ``key``, adding it once."""
        if key not in self._index:
            self.keys.append(key)
            self._index[key] = len(self.keys)
        return self._index[key]


def _retried(retry: RetryPolicy, fn: Callable[[], T], what: str) -> T:
    """`fn` with connection errors and timeouts retried by `retry`; any Redis error left
    (or the retries spent) raises ``SinkError`` naming `what`."""
    try:
        return retry.call(fn, what, retry_on=(redis.ConnectionError, redis.TimeoutError))
    except redis.RedisError as exc:
        log.error("%s failed: %s", what, exc)
        raise SinkError(f"{what} failed: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


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

        results = _retried(self._retry, _once, what)
        decisions: list[Decision | None] = [None] * len(requests)
        for (_, idx), flat in zip(calls, results, strict=True):
            for n, i in enumerate(idx):
                status, reason, replay = flat[3 * n : 3 * n + 3]
                decisions[i] = Decision(
                    requests[i].action_id, _text(status), _text(reason), int(replay) > 0, int(replay) == 2
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

    _retried(retry or RetryPolicy(), _once, f"mark {len(sends)} sends as delivered")


# --- state from the stream ----------------------------------------------------------------


def unsubscribe(
    client: redis.Redis | RedisCluster,
    profile_id: str,
    channel: str | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """Suppress one channel for the profile, or every channel (do-not-contact) with None."""
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS} or None, not {channel!r}")
    key = suppress_key(profile_id)
    (retry or RetryPolicy()).call(
        lambda: client.sadd(key, channel or "*"),
        f"unsubscribe {profile_id} from {channel or 'all channels'}",
        retry_on=(redis.ConnectionError, redis.TimeoutError),
    )


def set_consent(
    client: redis.Redis | RedisCluster,
    profile_id: str,
    channel: str,
    granted: bool,
    retry: RetryPolicy | None = None,
) -> None:
    """Record the profile's consent (or refusal) for one channel."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
    key = consent_key(profile_id)
    (retry or RetryPolicy()).call(
        lambda: client.hset(key, channel, "1" if granted else "0"),
        f"set the {channel} consent of {profile_id}",
        retry_on=(redis.ConnectionError, redis.TimeoutError),
    )
