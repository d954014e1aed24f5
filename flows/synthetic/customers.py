"""A seeded generator of realistic social-CRM customers, one JSON event (``bytes``) at a time.

What it generates
-----------------
``SyntheticCustomers(SyntheticConfig(...))`` simulates ``profiles`` customers ``p000000``,
``p000001``, ... Each call of ``next_event(now_ms)`` lets one customer act and returns one
event encoded with orjson, following the event contract (see ``flows.core.contract``)::

    {"eventId": "9f1c...", "profileId": "p000123", "type": "order_paid", "ts": now_ms,
     "source": "app", "props": {...}, "identifiers": {...}}   # identifiers optional

Event families (per profile a small state machine keeps the sequences coherent):

* lifecycle: the first event of every profile is ``signup`` (with all its identifiers:
  phone, email, openId, unionId, deviceId); message flows can end in ``unsubscribe`` or
  ``complaint`` (``props.channel`` in sms/email/wecom, ``props.template``).
* web/app/miniprogram sessions: ``session_start`` then ``page_view``, ``search``,
  ``product_view``, ``add_to_cart``, ``remove_from_cart``, ``checkout_started``. The
  profile's next action after ``checkout_started`` is ``order_created`` for the cart (or
  the cart is abandoned), and its next action after ``order_created`` is ``order_paid``
  with the same ``orderId``, ``amount`` and source (or the order stays unpaid); paid
  orders are sometimes ``order_refunded`` later. ``pos`` purchases create and pay orders
  the same way. Amounts are CNY floats with 2 decimals.
* service: ``ticket_opened`` / ``ticket_closed`` (``props.ticketId``).
* messaging: ``message_sent`` -> ``message_opened`` -> ``message_clicked`` ->
  ``message_replied`` (each step may stop the flow), channel sms/email/wecom.
* sales: ``opportunity_created`` (stage ``lead``, amount, ownerId), sales activities
  ``call_logged`` / ``meeting_held`` / ``email_sent_by_rep``,
  ``opportunity_stage_changed`` lead -> qualified -> proposal -> negotiation, and finally
  exactly one ``opportunity_won`` or ``opportunity_lost``.
* identifiers ride on every ``signup`` and on about 3 % of the other events.

Latent traits (drawn once per profile from the seeded rng, kept in ``Profile.traits``)
-------------------------------------------------------------------------------------
``engagement`` ~ Beta(2, 5), ``value`` ~ Beta(2, 3), ``churn_propensity`` ~ Beta(2, 4),
``timezone`` (mostly ``Asia/Shanghai``) and ``birthday`` (``"MM-DD"``); the last two are
reported in the ``signup`` props and do not change behaviour.

* Who acts: the next profile is drawn with weight ``0.02 + engagement`` among the profiles
  that are not silent.
* ``value`` drives what is bought (pricier SKUs), checkout conversion, payment, opportunity
  creation and amounts.

The propensity rules (the later scoring feature relies on them, the generator obeys them)
----------------------------------------------------------------------------------------
Churn: ``churn_probability(traits) = sigmoid(10 (churn_propensity - 0.6)
- 3 (engagement - 0.5))``. At creation each profile draws ``u ~ U(0, 1)``; it is a churner
iff ``u < churn_probability(traits)``. A churner also draws ``churn_after = 5 + floor(45 u')``
(``u' ~ U(0, 1)``): right after emitting its ``churn_after``-th event (signup included) it
goes silent and produces no event at all for ``CHURN_SILENCE_MS`` (180 days) of caller
time; after that it is won back and never churns again. Only if every profile is silent at
once is the one whose silence ends first woken early, so the stream never stalls (with
realistic profile counts this does not happen). Non-churners never go silent.

Win: an opportunity's fate is sealed when it is created: it will be won iff
``u < win_probability(value, amount)`` with ``u ~ U(0, 1)`` drawn at creation and
``amount`` its ``opportunity_created`` amount::

    win_probability = sigmoid(-0.3 + 3 (value - 0.5) - 0.9 log10(amount / 10000))

and the buyer behaves accordingly: each step of an open opportunity is a sales activity
(``call_logged`` / ``meeting_held`` / ``email_sent_by_rep``) with probability
``ACTIVITY_IF_WON`` = 0.7 for a deal that will be won and ``ACTIVITY_IF_LOST`` = 0.3 for one
that will be lost, otherwise the next stage change; after ``negotiation`` a non-activity step
closes it (``opportunity_won`` / ``opportunity_lost``). So a deal's outcome shows in its
activity as it goes: the log-odds of a win given ``a`` activities after ``s`` stage steps
move by ``a ln(7/3) + s ln(3/7)`` from the prior at creation.

Noise on purpose
----------------
``late_share`` of the normal events carry ``ts = now_ms - U{1..max_lateness_ms}`` (never
below 0) instead of ``now_ms``; ``malformed_share`` of the outputs are broken on purpose
(truncated JSON, a JSON array, no ``eventId``, no ``ts``, ``props`` a string, a ``type``
with spaces or upper case, a ``ts`` in the year 2300, an empty ``profileId`` without
identifiers) and do not advance any profile's state; ``duplicate_share`` of the outputs
re-send the exact bytes of one of the last ``RING_SIZE`` valid outputs. ``generated``
counts every output, malformed and duplicates included.

Determinism
-----------
One ``random.Random(seed)`` drives everything: no global ``random``, no ``hash()``, no
wall clock. The same config and the same sequence of ``now_ms`` give byte-identical output,
also across a pickle round trip. Event ids are ``(counter * odd constant mod 2**64) xor
seeded key`` in 16 hex digits, a bijection of the counter, so they never repeat within a
generator. Memory is O(profiles) plus a ring of ``RING_SIZE`` outputs.

>>> gen = SyntheticCustomers(SyntheticConfig(profiles=10, seed=7))
>>> first = orjson.loads(gen.next_event(1_700_000_000_000))
>>> first["type"], first["ts"], gen.generated
('signup', 1700000000000, 1)
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "CHURN_SILENCE_MS",
    "EVENT_TYPES",
    "RING_SIZE",
    "SOURCES",
    "Profile",
    "SyntheticConfig",
    "SyntheticCustomers",
    "Traits",
    "churn_probability",
    "win_probability",
]

SOURCES = ("web", "app", "miniprogram", "wecom", "sms", "email", "pos", "crm", "callcenter")
CHANNELS = ("sms", "email", "wecom")
STAGES = ("lead", "qualified", "proposal", "negotiation")
SALES_ACTIVITIES = ("call_logged", "meeting_held", "email_sent_by_rep")
EVENT_TYPES = frozenset(
    {
        "signup",
        "unsubscribe",
        "complaint",
        "session_start",
        "page_view",
        "search",
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "checkout_started",
        "order_created",
        "order_paid",
        "order_refunded",
        "ticket_opened",
        "ticket_closed",
        "message_sent",
        "message_opened",
        "message_clicked",
        "message_replied",
        "opportunity_created",
        "opportunity_stage_changed",
        "opportunity_won",
        "opportunity_lost",
        *SALES_ACTIVITIES,
    }
)
CHURN_SILENCE_MS = 180 * 86_400_000
RING_SIZE = 1000
YEAR_2300_MS = 10_413_792_000_000  # 2300-01-01T00:00:00Z
IDENTIFIER_SHARE = 0.03

_M64 = (1 << 64) - 1
_ODD64 = 0x9E3779B97F4A7C15  # odd, so multiplying by it permutes the integers mod 2**64
_TIMEZONES = (
    ("Asia/Shanghai", 0.70),
    ("Asia/Hong_Kong", 0.06),
    ("Asia/Singapore", 0.05),
    ("Asia/Tokyo", 0.04),
    ("Europe/Berlin", 0.06),
    ("Europe/London", 0.03),
    ("America/New_York", 0.04),
    ("America/Los_Angeles", 0.02),
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_PAGES = (
    "/",
    "/home",
    "/category/skincare",
    "/category/makeup",
    "/category/fragrance",
    "/category/haircare",
    "/promo/double11",
    "/promo/618",
    "/brand/story",
    "/member/center",
    "/coupons",
    "/help/shipping",
)
_QUERIES = (
    "面霜",
    "口红",
    "防晒",
    "精华液",
    "香水",
    "洗发水",
    "gift set",
    "vitamin c serum",
    "sunscreen spf50",
    "会员积分",
)
_UTM = ("organic", "search_ads", "social", "push", "wecom_share", "sms_link", "email_link")
_TEMPLATES = (
    "welcome_series_1",
    "cart_reminder",
    "promo_618",
    "promo_double11",
    "birthday_coupon",
    "winback_30d",
    "order_shipped",
    "survey_nps",
)
_TICKET_CATEGORIES = ("shipping", "refund", "product_quality", "account", "invoice", "other")
_PAY_METHODS = ("wechat_pay", "alipay", "unionpay", "card")
_EMAIL_DOMAINS = ("qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "foxmail.com")
_PHONE_PREFIXES = ("130", "135", "136", "138", "139", "150", "152", "158", "186", "188", "199")
_CATALOG_SIZE = 400
_SKUS = tuple(f"SKU-{k:05d}" for k in range(_CATALOG_SIZE))  # catalog rank k, cheapest first
_OWNERS = 40
_STORES = 25


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    profiles: int = 1000  # number of distinct customers
    seed: int = 42
    late_share: float = 0.0  # share of events whose ts is shifted back by up to max_lateness_ms
    max_lateness_ms: int = 3_600_000
    malformed_share: float = 0.0  # share of outputs that are malformed on purpose
    duplicate_share: float = 0.0  # share of outputs that re-send an earlier event's exact bytes

    def __post_init__(self) -> None:
        if self.profiles < 1:
            raise ValueError(f"profiles must be >= 1, got {self.profiles}")
        for name in ("late_share", "malformed_share", "duplicate_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {share}")
        if self.malformed_share + self.duplicate_share > 1.0:
            raise ValueError("malformed_share + duplicate_share must not exceed 1")
        if self.max_lateness_ms < 0:
            raise ValueError(f"max_lateness_ms must be >= 0, got {self.max_lateness_ms}")


@dataclass(frozen=True, slots=True)
class Traits:
    """The hidden, fixed traits of one profile (see the module docstring)."""

    engagement: float
    value: float
    churn_propensity: float
    timezone: str
    birthday: str  # "MM-DD"


def _sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def churn_probability(traits: Traits) -> float:
    """Probability that a profile is a churner (goes silent after ``churn_after`` events).

    ``sigmoid(10 (churn_propensity - 0.6) - 3 (engagement - 0.5))``: rising with the churn
    propensity, falling with engagement.

    >>> round(churn_probability(Traits(0.5, 0.5, 0.6, "Asia/Shanghai", "01-01")), 3)
    0.5
    """
    return _sigmoid(10.0 * (traits.churn_propensity - 0.6) - 3.0 * (traits.engagement - 0.5))


ACTIVITY_IF_WON = 0.7
ACTIVITY_IF_LOST = 0.3


def win_probability(value: float, amount: float) -> float:
    """Probability, drawn against at creation, that an opportunity will be won.

    ``sigmoid(-0.3 + 3 (value - 0.5) - 0.9 log10(amount / 10000))``: valuable customers win
    more often, big deals less often.

    >>> round(win_probability(0.5, 10_000.0), 3), round(win_probability(0.9, 5_000.0), 3)
    (0.426, 0.763)
    """
    return _sigmoid(-0.3 + 3.0 * (value - 0.5) - 0.9 * math.log10(max(amount, 1.0) / 10_000.0))


class Profile:
    """One simulated customer: its traits, identifiers and the state of its flows."""

    __slots__ = (
        "cart",
        "churn_after",
        "churned",
        "events",
        "identifiers",
        "in_table",
        "index",
        "last_paid_amount",
        "last_paid_id",
        "msg_channel",
        "msg_stage",
        "msg_template",
        "opp_activities",
        "opp_amount",
        "opp_id",
        "opp_owner",
        "opp_stage",
        "opp_won",
        "order_amount",
        "order_id",
        "order_source",
        "order_stage",
        "profile_id",
        "session_id",
        "session_left",
        "session_source",
        "silent",
        "silent_since",
        "silent_until",
        "subscribed",
        "ticket_id",
        "traits",
        "weight",
    )

    def __init__(self, index: int, traits: Traits, churn_after: int) -> None:
        self.index = index
        self.profile_id = f"p{index:06d}"
        self.traits = traits
        self.weight = 0.02 + traits.engagement
        self.churn_after = churn_after  # goes silent right after this many events; -1: never
        self.churned = False  # went silent at least once
        self.silent = False
        self.silent_since = -1  # caller time of the last event before the silence
        self.silent_until = -1
        self.in_table = False
        self.events = 0
        self.identifiers: dict[str, str] | None = None  # set at signup
        self.subscribed = list(CHANNELS)
        self.session_id = ""
        self.session_source = ""
        self.session_left = 0
        self.cart: list[tuple[str, float, int]] = []
        self.order_stage = 0  # 0 none, 1 checkout started, 2 order created (unpaid)
        self.order_id = ""
        self.order_amount = 0.0
        self.order_source = ""
        self.last_paid_id = ""
        self.last_paid_amount = 0.0
        self.msg_channel = ""
        self.msg_template = ""
        self.msg_stage = 0  # 0 none, 1 sent, 2 opened, 3 clicked
        self.ticket_id = ""
        self.opp_id = ""
        self.opp_stage = 0
        self.opp_amount = 0.0
        self.opp_owner = ""
        self.opp_activities = 0
        self.opp_won = False  # decided at creation (see win_probability)

    @property
    def is_churner(self) -> bool:
        """True if the churn rule made this profile a churner (see ``churn_probability``)."""
        return self.churn_after >= 0


class SyntheticCustomers:
    """Seeded synthetic CRM customers; see the module docstring for the traits, the rules
    (``churn_probability``, ``win_probability``), the noise shares and determinism.

    ``next_event(now_ms)`` returns one event at caller time ``now_ms``; ``take(n, start_ms,
    step_ms)`` returns ``n`` events on the clock ``start_ms + i * step_ms``; ``generated``
    counts the outputs; ``profiles`` exposes the simulated customers (traits and state).
    Picklable; a restored copy continues the identical stream.
    """

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self._malformed_share = config.malformed_share
        self._noise_share = config.malformed_share + config.duplicate_share
        self._noise = self._noise_share > 0.0
        self._max_late = config.max_lateness_ms
        self._late_share = config.late_share if config.max_lateness_ms > 0 else 0.0
        rng = random.Random(config.seed)
        self._rng = rng
        self._rnd = rng.random
        self._id_key = rng.getrandbits(64)
        self._phone_key = rng.randrange(10**8)
        self._catalog = sorted(round(rng.lognormvariate(4.0, 0.9) + 1.0, 2) for _ in range(_CATALOG_SIZE))
        self._profiles = [self._new_profile(i) for i in range(config.profiles)]
        self.generated = 0
        self._eid = 0
        self._sessions = 0
        self._orders = 0
        self._tickets = 0
        self._opps = 0
        self._ring: deque[bytes] = deque(maxlen=RING_SIZE)  # last valid outputs, for duplicates
        self._wake_heap: list[tuple[int, int]] = []
        self._cum: list[float] = []
        self._idx: list[int] = []
        self._total = 0.0
        self._silent_weight = 0.0  # weight of silent profiles still in the table
        self._active = config.profiles
        self._rebuild()

    # ------------------------------------------------------------------ public API

    @property
    def profiles(self) -> tuple[Profile, ...]:
        return tuple(self._profiles)

    def take(self, n: int, start_ms: int, step_ms: int) -> list[bytes]:
        nxt = self.next_event
        return [nxt(start_ms + i * step_ms) for i in range(n)]

    def next_event(self, now_ms: int) -> bytes:
        self.generated += 1
        rnd = self._rnd
        if self._noise:
            r = rnd()
            if r < self._malformed_share:
                return self._malformed(now_ms)
            if r < self._noise_share and self._ring:
                return self._ring[int(rnd() * len(self._ring))]
        # pick the acting profile: weight 0.02 + engagement, silent profiles rejected
        heap = self._wake_heap
        if (heap and heap[0][0] <= now_ms) or not self._active:
            self._wake_due(now_ms)
        cum = self._cum
        total = self._total
        profiles = self._profiles
        idx = self._idx
        while True:
            try:
                p = profiles[idx[bisect_right(cum, rnd() * total)]]
            except IndexError:  # rnd() * total rounded up to total
                p = profiles[idx[-1]]
            if not p.silent:
                break
        ts = now_ms
        if self._late_share and rnd() < self._late_share:
            ts = now_ms - self._rng.randint(1, self._max_late)
            if ts < 0:
                ts = 0
        out = self._step(p, ts)
        p.events += 1
        if p.events == p.churn_after:
            self._silence(p, now_ms)
        self._ring.append(out)
        return out

    # ------------------------------------------------------------------ profiles

    def _new_profile(self, index: int) -> Profile:
        rng = self._rng
        engagement = rng.betavariate(2.0, 5.0)
        value = rng.betavariate(2.0, 3.0)
        churn_propensity = rng.betavariate(2.0, 4.0)
        x = rng.random()
        timezone = _TIMEZONES[-1][0]
        for name, w in _TIMEZONES:
            if x < w:
                timezone = name
                break
            x -= w
        day = rng.randrange(365)
        month = 0
        while day >= _DAYS_IN_MONTH[month]:
            day -= _DAYS_IN_MONTH[month]
            month += 1
        traits = Traits(
            engagement=engagement,
            value=value,
            churn_propensity=churn_propensity,
            timezone=timezone,
            birthday=f"{month + 1:02d}-{day + 1:02d}",
        )
        churns = rng.random() < churn_probability(traits)
        churn_after = 5 + int(rng.random() * 45)
        return Profile(index, traits, churn_after if churns else -1)

    def _rebuild(self) -> None:
        cum: list[float] = []
        idx: list[int] = []
        total = 0.0
        for p in self._profiles:
            if p.silent:
                p.in_table = False
                continue
            total += p.weight
            cum.append(total)
            idx.append(p.index)
            p.in_table = True
        self._cum, self._idx, self._total, self._silent_weight = cum, idx, total, 0.0

    def _silence(self, p: Profile, now_ms: int) -> None:
        p.silent = True
        p.churned = True
        p.silent_since = now_ms
        p.silent_until = now_ms + CHURN_SILENCE_MS
        heapq.heappush(self._wake_heap, (p.silent_until, p.index))
        self._active -= 1
        self._silent_weight += p.weight
        if self._active and self._silent_weight > 0.5 * self._total:
            self._rebuild()

    def _wake(self, index: int) -> None:
        p = self._profiles[index]
        p.silent = False
        self._active += 1
        if p.in_table:
            self._silent_weight -= p.weight
        else:
            self._total += p.weight
            self._cum.append(self._total)
            self._idx.append(index)
            p.in_table = True

    def _wake_due(self, now_ms: int) -> None:
        heap = self._wake_heap
        while heap and heap[0][0] <= now_ms:
            self._wake(heapq.heappop(heap)[1])
        if not self._active:  # everybody silent: wake the one due first (see docstring)
            self._wake(heapq.heappop(heap)[1])

    # ------------------------------------------------------------------ encoding

    def _event_id(self) -> str:
        # odd multiplier then xor with a seeded key: a bijection of the counter mod 2**64,
        # so ids never repeat within a generator
        self._eid += 1
        return (((self._eid * _ODD64) & _M64) ^ self._id_key).to_bytes(8, "big").hex()

    def _emit(self, p: Profile, ts: int, etype: str, source: str, props: dict[str, Any]) -> bytes:
        self._eid = eid = self._eid + 1
        ev: dict[str, Any] = {
            # == _event_id(), inlined: this is the hot path
            "eventId": (((eid * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) ^ self._id_key)
            .to_bytes(8, "big")
            .hex(),
            "profileId": p.profile_id,
            "type": etype,
            "ts": ts,
            "source": source,
            "props": props,
        }
        if self._rnd() < IDENTIFIER_SHARE:
            ids = p.identifiers
            assert ids is not None  # every profile signs up first
            if source == "app" or source == "web":
                ev["identifiers"] = {"deviceId": ids["deviceId"]}
            elif source == "miniprogram" or source == "wecom":
                ev["identifiers"] = {"openId": ids["openId"], "unionId": ids["unionId"]}
            elif source == "email":
                ev["identifiers"] = {"email": ids["email"]}
            else:
                ev["identifiers"] = {"phone": ids["phone"]}
        return orjson.dumps(ev)

    # ------------------------------------------------------------------ behaviour

    def _step(self, p: Profile, ts: int) -> bytes:
        if p.identifiers is None:
            return self._signup(p, ts)
        rnd = self._rnd
        value = p.traits.value
        if p.order_stage == 1:  # after checkout_started: create the order, or abandon the cart
            if rnd() < 0.45 + 0.45 * value:
                cart, p.cart = p.cart, []
                return self._order_created(p, ts, p.session_source, cart)
            p.order_stage = 0
        elif p.order_stage == 2:  # after order_created: pay it, or leave it unpaid
            if rnd() < 0.75 + 0.2 * value:
                return self._order_paid(p, ts)
            p.order_stage = 0
        if p.session_left > 0 and rnd() < 0.9:
            return self._session_step(p, ts)
        r = rnd()
        if p.opp_id and r < 0.6:
            return self._opportunity_step(p, ts)
        if p.msg_stage and r < 0.6:
            out = self._message_step(p, ts)
            if out is not None:
                return out
        elif p.ticket_id and r < 0.7:
            tid = p.ticket_id
            p.ticket_id = ""
            return self._emit(
                p,
                ts,
                "ticket_closed",
                "callcenter",
                {"ticketId": tid, "resolution": "solved" if rnd() < 0.85 else "no_response"},
            )
        # something new
        r = rnd()
        if r < 0.55:
            return self._session_start(p, ts)
        if r < 0.75:
            if p.subscribed and not p.msg_stage:
                return self._message_sent(p, ts)
            return self._session_start(p, ts)
        if r < 0.80:
            return self._order_created(p, ts, "pos", [self._pick_item(value)])
        if r < 0.84:
            if p.last_paid_id and rnd() < 0.5 - 0.3 * value:
                return self._order_refunded(p, ts)
        elif r < 0.87:
            if not p.ticket_id:
                return self._ticket_opened(p, ts)
        elif not p.opp_id and rnd() < 0.2 + 0.6 * value:
            return self._opportunity_created(p, ts)
        return self._session_start(p, ts)

    # lifecycle

    def _signup(self, p: Profile, ts: int) -> bytes:
        rng = self._rng
        i = p.index
        ids = {
            "phone": f"{_PHONE_PREFIXES[i % len(_PHONE_PREFIXES)]}{(i * 7919 + self._phone_key) % 10**8:08d}",
            "email": f"user{i}.{rng.getrandbits(16):04x}@{rng.choice(_EMAIL_DOMAINS)}",
            "openId": f"o{rng.getrandbits(108):027x}",
            "unionId": f"u{rng.getrandbits(108):027x}",
            "deviceId": f"{rng.getrandbits(128):032x}",
        }
        p.identifiers = ids
        t = p.traits
        ev = {
            "eventId": self._event_id(),
            "profileId": p.profile_id,
            "type": "signup",
            "ts": ts,
            "source": ("app", "web", "miniprogram", "wecom", "pos")[int(rng.random() * 5)],
            "props": {
                "channel": _UTM[int(rng.random() * len(_UTM))],
                "timezone": t.timezone,
                "birthday": t.birthday,
            },
            "identifiers": ids,
        }
        return orjson.dumps(ev)

    # shopping

    def _pick_item(self, value: float) -> tuple[str, float, int]:
        # pricier products for more valuable customers: catalog rank ~ U ** (2 - 1.5 value)
        k = int(self._rnd() ** (2.0 - 1.5 * value) * _CATALOG_SIZE)
        if k >= _CATALOG_SIZE:
            k = _CATALOG_SIZE - 1
        return _SKUS[k], self._catalog[k], 1 if self._rnd() < 0.8 else 2

    def _session_start(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        self._sessions += 1
        p.session_id = f"s{self._sessions:09d}"
        x = rnd()
        p.session_source = "web" if x < 0.45 else ("app" if x < 0.85 else "miniprogram")
        p.session_left = 2 + int(rnd() * (4 + 16 * p.traits.engagement))
        return self._emit(
            p,
            ts,
            "session_start",
            p.session_source,
            {"sessionId": p.session_id, "channel": _UTM[int(rnd() * len(_UTM))], "page": "/"},
        )

    def _session_step(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        value = p.traits.value
        sid = p.session_id
        p.session_left -= 1
        cart = p.cart
        r = rnd()
        props: dict[str, Any]
        if r < 0.32:
            etype = "page_view"
            props = {"sessionId": sid, "page": _PAGES[int(rnd() * len(_PAGES))]}
        elif r < 0.44:
            etype = "search"
            props = {"sessionId": sid, "query": _QUERIES[int(rnd() * len(_QUERIES))]}
        elif r < 0.68:
            sku, price, _ = self._pick_item(value)
            etype = "product_view"
            props = {"sessionId": sid, "sku": sku, "price": price, "currency": "CNY"}
        elif r < 0.74 + 0.12 * value:
            item = self._pick_item(value)
            if len(cart) >= 10:
                cart.pop(0)
            cart.append(item)
            etype = "add_to_cart"
            props = {
                "sessionId": sid,
                "sku": item[0],
                "price": item[1],
                "qty": item[2],
                "currency": "CNY",
            }
        elif cart and r < 0.80 + 0.06 * value:
            sku, _, qty = cart.pop(int(rnd() * len(cart)))
            etype = "remove_from_cart"
            props = {"sessionId": sid, "sku": sku, "qty": qty}
        elif cart:
            etype = "checkout_started"
            p.order_stage = 1
            props = {
                "sessionId": sid,
                "amount": _cart_amount(cart),
                "items": sum(item[2] for item in cart),
                "currency": "CNY",
            }
        else:
            etype = "page_view"
            props = {"sessionId": sid, "page": _PAGES[int(rnd() * len(_PAGES))]}
        return self._emit(p, ts, etype, p.session_source, props)

    def _order_created(self, p: Profile, ts: int, source: str, items: list[tuple[str, float, int]]) -> bytes:
        self._orders += 1
        p.order_id = f"o{self._orders:09d}"
        p.order_amount = _cart_amount(items)
        p.order_source = source
        p.order_stage = 2
        props: dict[str, Any] = {
            "orderId": p.order_id,
            "amount": p.order_amount,
            "currency": "CNY",
            "items": sum(item[2] for item in items),
            "skus": [item[0] for item in items],
        }
        if source == "pos":
            props["storeId"] = f"store{int(self._rnd() * _STORES):03d}"
        else:
            props["sessionId"] = p.session_id
        return self._emit(p, ts, "order_created", source, props)

    def _order_paid(self, p: Profile, ts: int) -> bytes:
        p.order_stage = 0
        p.last_paid_id = p.order_id
        p.last_paid_amount = p.order_amount
        method = "cash" if p.order_source == "pos" and self._rnd() < 0.3 else None
        if method is None:
            method = _PAY_METHODS[int(self._rnd() * len(_PAY_METHODS))]
        return self._emit(
            p,
            ts,
            "order_paid",
            p.order_source,
            {
                "orderId": p.order_id,
                "amount": p.order_amount,
                "currency": "CNY",
                "paymentMethod": method,
            },
        )

    def _order_refunded(self, p: Profile, ts: int) -> bytes:
        oid = p.last_paid_id
        p.last_paid_id = ""
        return self._emit(
            p,
            ts,
            "order_refunded",
            "crm",
            {
                "orderId": oid,
                "amount": p.last_paid_amount,
                "currency": "CNY",
                "reason": "quality" if self._rnd() < 0.5 else "changed_mind",
            },
        )

    # service

    def _ticket_opened(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        self._tickets += 1
        p.ticket_id = f"t{self._tickets:08d}"
        props: dict[str, Any] = {
            "ticketId": p.ticket_id,
            "category": _TICKET_CATEGORIES[int(rnd() * len(_TICKET_CATEGORIES))],
        }
        if p.last_paid_id:
            props["orderId"] = p.last_paid_id
        return self._emit(p, ts, "ticket_opened", "callcenter" if rnd() < 0.6 else "wecom", props)

    # messaging

    def _message_sent(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        channel = p.subscribed[int(rnd() * len(p.subscribed))]
        p.msg_channel = channel
        p.msg_template = _TEMPLATES[int(rnd() * len(_TEMPLATES))]
        p.msg_stage = 1
        return self._emit(p, ts, "message_sent", channel, {"channel": channel, "template": p.msg_template})

    def _message_step(self, p: Profile, ts: int) -> bytes | None:
        rnd = self._rnd
        t = p.traits
        channel = p.msg_channel
        stage = p.msg_stage
        p.msg_stage = 0
        r = rnd()
        etype = ""
        if stage == 1:
            if r < 0.01 + 0.04 * t.churn_propensity:
                etype = "complaint"
            elif r < 0.02 + 0.10 * t.churn_propensity:
                etype = "unsubscribe"
                p.subscribed.remove(channel)
            elif r < 0.25 + 0.5 * t.engagement:
                etype = "message_opened"
                p.msg_stage = 2
        elif stage == 2:
            if r < 0.2 + 0.4 * t.engagement:
                etype = "message_clicked"
                p.msg_stage = 3
        elif r < (0.25 if channel == "wecom" else 0.08) + 0.2 * t.engagement:
            etype = "message_replied"
        if not etype:
            return None
        return self._emit(p, ts, etype, channel, {"channel": channel, "template": p.msg_template})

    # sales

    def _opportunity_created(self, p: Profile, ts: int) -> bytes:
        rng = self._rng
        self._opps += 1
        p.opp_id = f"op{self._opps:08d}"
        p.opp_stage = 0
        p.opp_activities = 0
        p.opp_amount = round(rng.lognormvariate(8.6 + 1.2 * p.traits.value, 0.6), 2)
        p.opp_won = rng.random() < win_probability(p.traits.value, p.opp_amount)
        p.opp_owner = f"u{int(rng.random() * _OWNERS):03d}"
        return self._emit(
            p,
            ts,
            "opportunity_created",
            "crm",
            {
                "opportunityId": p.opp_id,
                "stage": STAGES[0],
                "amount": p.opp_amount,
                "currency": "CNY",
                "ownerId": p.opp_owner,
            },
        )

    def _opportunity_step(self, p: Profile, ts: int) -> bytes:
        rnd = self._rnd
        oid = p.opp_id
        owner = p.opp_owner
        props: dict[str, Any] = {"opportunityId": oid, "ownerId": owner}
        r = rnd()
        if r < (ACTIVITY_IF_WON if p.opp_won else ACTIVITY_IF_LOST):
            p.opp_activities += 1
            etype = SALES_ACTIVITIES[int(rnd() * 3)]
            source = "callcenter" if etype == "call_logged" else "crm"
            if etype != "email_sent_by_rep":
                props["durationSec"] = 60 + int(rnd() * 3540)
        elif p.opp_stage < 3:
            props["fromStage"] = STAGES[p.opp_stage]
            p.opp_stage += 1
            props["stage"] = STAGES[p.opp_stage]
            props["amount"] = p.opp_amount
            props["currency"] = "CNY"
            etype = "opportunity_stage_changed"
            source = "crm"
        else:
            won = p.opp_won
            etype = "opportunity_won" if won else "opportunity_lost"
            source = "crm"
            props["stage"] = "won" if won else "lost"
            props["amount"] = p.opp_amount
            props["currency"] = "CNY"
            p.opp_id = ""
        return self._emit(p, ts, etype, source, props)

    # noise

    def _malformed(self, now_ms: int) -> bytes:
        """A broken output built from a detached event; no profile's state moves."""
        rnd = self._rnd
        p = self._profiles[int(rnd() * len(self._profiles))]
        base: dict[str, Any] = {
            "eventId": self._event_id(),
            "profileId": p.profile_id,
            "type": "page_view",
            "ts": now_ms,
            "source": "web",
            "props": {"page": _PAGES[int(rnd() * len(_PAGES))]},
        }
        kind = int(rnd() * 8)
        if kind == 0:  # truncated JSON: a proper prefix of an object never parses
            raw = orjson.dumps(base)
            return raw[: 1 + int(rnd() * (len(raw) - 1))]
        if kind == 1:
            return orjson.dumps([base])
        if kind == 2:
            del base["eventId"]
        elif kind == 3:
            del base["ts"]
        elif kind == 4:
            base["props"] = f"page={base['props']['page']};currency=CNY"
        elif kind == 5:
            base["type"] = ("Page View", "PAGE_VIEW", "add to cart", "Order Paid")[int(rnd() * 4)]
        elif kind == 6:
            base["ts"] = YEAR_2300_MS + int(rnd() * 365 * 86_400_000)
        else:
            base["profileId"] = ""
        return orjson.dumps(base)


def _cart_amount(cart: list[tuple[str, float, int]]) -> float:
    return round(sum(price * qty for _, price, qty in cart), 2)
