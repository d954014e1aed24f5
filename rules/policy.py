"""What the guards decide, without the I/O: the requests, the decisions, the caps, the
action ids and the Redis keys it all lives under. `rules.guards` runs the decisions in
Redis.

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
    (``rules.guards.mark_delivered`` drops it, TTL kept); a record without it counts as
    delivered.
``scrm:consent:{pid}``  hash ``<channel> | * -> "1" | "0"`` and ``<channel>:at ->
    "<event ms>|<version>|<event id>"``, no TTL. Only an explicit ``"0"`` refuses a
    channel: a channel without a field follows ``*``, and without either it is consented
    (opt-out model). Written in event time by ``rules.guards.record_consent``.
``scrm:suppress:{pid}``  set of channel names, and ``*`` for do-not-contact, no TTL.
``scrm:suppress:{pid}:at``  hash ``<channel> -> "<event ms>|unsubscribe"`` or
    ``"|complaint"``: the newest suppression of each, which a newer grant may lift (an
    unsubscribe only; a member without a time is never lifted).
``scrm:dedupe:{pid}:<template>``  string: event time (ms) of the last send of that
    template to the profile, PX the dedupe window.
``scrm:merged:{pid}``  set of the merge ids whose loser's records were folded into the
    profile's (`rules.person_merge`): a replayed merge folds nothing again.
``scrm:cap:{pid}:profile:<channel|*>``  sorted set of the ``action_id`` s sent, scored by
    event time (ms): caps over all journeys of the profile (``*`` = all channels).
``scrm:cap:{pid}:journey:<channel|*>:<journey_id>``  the same, for one journey (all its
    versions).

A cap set's TTL is only ever extended, to the longest window a call declared for it.

Caps are checked against the sets they name, so a profile-scope cap only sees the sends
of actions that declared it: the journey layer gives every journey of a profile the
same profile-scope caps (one policy from the settings, `rules.actions.profile_caps`). A
cap set's old entries are trimmed to the longest window the current call declares for
it; a shorter window declared by one journey and a longer one by another, on the same
set, would lose entries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flows.core.durations import DAY_MS, format_duration
from rules.journeys.model import CHANNELS

SCOPES = ("profile", "journey")
STATUSES = ("sent", "capped", "suppressed", "no_consent", "deduped", "holdout")
DEFAULT_DECISION_TTL_MS = 30 * DAY_MS


# --- keys -------------------------------------------------------------------------------


def hash_tag(profile_id: str) -> str:
    """``{profile_id}``: the Redis Cluster hash tag every key of the profile carries."""
    if not profile_id or "{" in profile_id or "}" in profile_id:
        raise ValueError(f"profile id {profile_id!r} cannot be a Redis Cluster hash tag")
    return f"{{{profile_id}}}"


def decision_key(profile_id: str, action_id: str) -> str:
    """The idempotency record of one action.

    >>> decision_key("p42", "ab12")
    'scrm:decision:{p42}:ab12'
    """
    return f"scrm:decision:{hash_tag(profile_id)}:{action_id}"


def consent_key(profile_id: str) -> str:
    """The profile's consent per channel.

    >>> consent_key("p42")
    'scrm:consent:{p42}'
    """
    return f"scrm:consent:{hash_tag(profile_id)}"


def suppress_key(profile_id: str) -> str:
    """The profile's suppressed channels (``*`` = do-not-contact).

    >>> suppress_key("p42")
    'scrm:suppress:{p42}'
    """
    return f"scrm:suppress:{hash_tag(profile_id)}"


def suppress_at_key(profile_id: str) -> str:
    """When each of the profile's suppressions happened (event time), so a later
    re-subscribe can lift it and an earlier one cannot.

    >>> suppress_at_key("p42")
    'scrm:suppress:{p42}:at'
    """
    return f"scrm:suppress:{hash_tag(profile_id)}:at"


def merged_key(profile_id: str) -> str:
    """The merges folded into the profile's guard records.

    >>> merged_key("p42")
    'scrm:merged:{p42}'
    """
    return f"scrm:merged:{hash_tag(profile_id)}"


def dedupe_key(profile_id: str, template: str) -> str:
    """When ``template`` last reached the profile.

    >>> dedupe_key("p42", "welcome")
    'scrm:dedupe:{p42}:welcome'
    """
    return f"scrm:dedupe:{hash_tag(profile_id)}:{template}"


def cap_key(profile_id: str, scope: str, channel: str | None, journey_id: str | None = None) -> str:
    """The sorted set a cap counts in; ``channel=None`` means all channels.

    >>> cap_key("p42", "profile", None)
    'scrm:cap:{p42}:profile:*'
    >>> cap_key("p42", "journey", "sms", "onboarding")
    'scrm:cap:{p42}:journey:sms:onboarding'
    """
    base = f"scrm:cap:{hash_tag(profile_id)}:{scope}:{channel or '*'}"
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
        hash_tag(self.profile_id)
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
