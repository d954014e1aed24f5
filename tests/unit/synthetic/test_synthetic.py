"""The synthetic customer generator: contract, determinism, noise shares, coherent sequences,
pickling, and the documented propensity rules (win and churn)."""

from __future__ import annotations

import pickle
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from flows.synthetic.customers import SyntheticConfig, SyntheticCustomers
from flows.synthetic.noise import RING_SIZE
from flows.synthetic.traits import CHURN_SILENCE_MS, Traits, churn_probability, win_probability
from flows.synthetic.vocabulary import EVENT_TYPES, SOURCES

T0 = 1_700_000_000_000
TYPE_RE = re.compile(r"[a-z0-9_.:-]{1,64}")
EVENT_ID_RE = re.compile(r"[0-9a-f]{16}")
PROFILE_RE = re.compile(r"p(\d{6,})")
YEAR_2100_MS = 4_102_444_800_000
SALES = {"call_logged", "meeting_held", "email_sent_by_rep"}
STAGES = ["lead", "qualified", "proposal", "negotiation"]
ID_NAMES = {"phone", "email", "openId", "unionId", "deviceId"}


def contract_error(raw: bytes, profiles: int) -> str | None:
    """Why ``raw`` breaks the event contract, or None when it is a valid event."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "invalid_json"
    return object_error(obj, profiles)


def object_error(obj: Any, profiles: int) -> str | None:
    if not isinstance(obj, dict):
        return "not_object"
    for name in ("eventId", "profileId", "type", "ts", "source", "props"):
        if name not in obj:
            return f"missing:{name}"
    if not isinstance(obj["eventId"], str) or not EVENT_ID_RE.fullmatch(obj["eventId"]):
        return "bad:eventId"
    match = PROFILE_RE.fullmatch(obj["profileId"]) if isinstance(obj["profileId"], str) else None
    if match is None or int(match.group(1)) >= profiles:
        return "bad:profileId"
    if not isinstance(obj["type"], str) or not TYPE_RE.fullmatch(obj["type"]):
        return "bad:type"
    if obj["type"] not in EVENT_TYPES:
        return "unknown:type"
    ts = obj["ts"]
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < YEAR_2100_MS:
        return "bad:ts"
    if obj["source"] not in SOURCES:
        return "bad:source"
    if not isinstance(obj["props"], dict):
        return "bad:props"
    ids = obj.get("identifiers")
    if ids is not None and (
        not isinstance(ids, dict)
        or not ids
        or set(ids) - ID_NAMES
        or not all(isinstance(v, str) and v for v in ids.values())
    ):
        return "bad:identifiers"
    if set(obj) - {"eventId", "profileId", "type", "ts", "source", "props", "identifiers"}:
        return "extra_field"
    return None


@dataclass
class Stream:
    gen: SyntheticCustomers
    raw: list[bytes]
    events: list[dict[str, Any]]
    clock: list[int]


@pytest.fixture(scope="module")
def clean() -> Stream:
    """A noise-free stream, long enough for a few hundred closed opportunities."""
    gen = SyntheticCustomers(SyntheticConfig(profiles=120, seed=3))
    raw = gen.take(40_000, T0, 10)
    return Stream(gen, raw, [orjson.loads(r) for r in raw], [T0 + 10 * i for i in range(40_000)])


@dataclass
class Noisy:
    cfg: SyntheticConfig
    raw: list[bytes]
    reasons: list[str | None]  # per output: why it is malformed, None for a valid event
    events: list[dict[str, Any] | None]  # per output: the parsed event when valid


@pytest.fixture(scope="module")
def noisy() -> Noisy:
    cfg = SyntheticConfig(
        profiles=500,
        seed=11,
        malformed_share=0.1,
        duplicate_share=0.05,
        late_share=0.1,
        max_lateness_ms=60_000,
    )
    raw = SyntheticCustomers(cfg).take(20_000, T0, 100)
    reasons: list[str | None] = []
    events: list[dict[str, Any] | None] = []
    for out in raw:
        try:
            obj = orjson.loads(out)
        except orjson.JSONDecodeError:
            reasons.append("invalid_json")
            events.append(None)
            continue
        reason = object_error(obj, cfg.profiles)
        reasons.append(reason)
        events.append(obj if reason is None else None)
    return Noisy(cfg, raw, reasons, events)


# ---------------------------------------------------------------- determinism


def test_same_config_same_bytes() -> None:
    cfg = SyntheticConfig(profiles=300, seed=5, late_share=0.1, malformed_share=0.05, duplicate_share=0.05)
    a, b = SyntheticCustomers(cfg), SyntheticCustomers(cfg)
    assert a.take(3000, T0, 7) == b.take(3000, T0, 7)
    # an irregular (even non-monotone) caller clock gives the same bytes as well
    clock = [T0 + 10_000 + (i * 7919) % 5000 for i in range(2000)]
    assert [a.next_event(t) for t in clock] == [b.next_event(t) for t in clock]
    assert a.generated == b.generated == 5000


def test_different_seeds_differ() -> None:
    a = SyntheticCustomers(SyntheticConfig(profiles=100, seed=1)).take(200, T0, 10)
    b = SyntheticCustomers(SyntheticConfig(profiles=100, seed=2)).take(200, T0, 10)
    assert a != b
    assert not {orjson.loads(x)["eventId"] for x in a} & {orjson.loads(x)["eventId"] for x in b}


def test_pickle_round_trip_continues_identically() -> None:
    cfg = SyntheticConfig(profiles=150, seed=9, late_share=0.05, malformed_share=0.05, duplicate_share=0.05)
    gen = SyntheticCustomers(cfg)
    gen.take(500, T0, 10)
    copy = pickle.loads(pickle.dumps(gen))
    assert copy.generated == gen.generated == 500
    assert copy.take(500, T0 + 5000, 10) == gen.take(500, T0 + 5000, 10)
    assert copy.generated == gen.generated == 1000


def test_memory_is_bounded() -> None:
    gen = SyntheticCustomers(SyntheticConfig(profiles=100, seed=4, duplicate_share=0.1))
    gen.take(2 * RING_SIZE, T0, 10)
    early = len(pickle.dumps(gen))
    gen.take(6000, T0 + 100_000, 10)
    assert len(pickle.dumps(gen)) < 1.5 * early


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SyntheticConfig(profiles=0)
    with pytest.raises(ValueError):
        SyntheticConfig(malformed_share=1.5)
    with pytest.raises(ValueError):
        SyntheticConfig(malformed_share=0.6, duplicate_share=0.6)
    with pytest.raises(ValueError):
        SyntheticConfig(max_lateness_ms=-1)


# ---------------------------------------------------------------- contract


def test_every_event_follows_the_contract(clean: Stream) -> None:
    profiles = clean.gen.config.profiles
    assert clean.gen.generated == len(clean.raw)
    for ev, now in zip(clean.events, clean.clock, strict=True):
        assert object_error(ev, profiles) is None, ev
        assert ev["ts"] == now  # no late events configured: event time is the caller's clock
        props = ev["props"]
        for key in ("amount", "price"):
            if key in props:
                assert isinstance(props[key], float) and round(props[key], 2) == props[key]
                assert props["currency"] == "CNY"
        if ev["type"].startswith("message_") or ev["type"] in ("unsubscribe", "complaint"):
            assert props["channel"] in ("sms", "email", "wecom") and props["template"]
    assert len({ev["eventId"] for ev in clean.events}) == len(clean.events)
    types = Counter(ev["type"] for ev in clean.events)
    assert set(types) == EVENT_TYPES  # every kind of event shows up
    assert sum("identifiers" in ev for ev in clean.events) > types["signup"]


def test_signup_carries_identifiers(clean: Stream) -> None:
    phones = set()
    for ev in clean.events:
        if ev["type"] == "signup":
            ids = ev["identifiers"]
            assert set(ids) == ID_NAMES
            assert re.fullmatch(r"1\d{10}", ids["phone"]) and "@" in ids["email"]
            phones.add(ids["phone"])
    assert len(phones) == clean.gen.config.profiles  # one distinct phone per customer


# ---------------------------------------------------------------- noise


def test_noise_shares(noisy: Noisy) -> None:
    cfg, n = noisy.cfg, len(noisy.raw)
    reasons = Counter(r for r in noisy.reasons if r is not None)
    first_bytes: dict[str, bytes] = {}
    duplicates = late = fresh = 0
    for i, (out, ev) in enumerate(zip(noisy.raw, noisy.events, strict=True)):
        if ev is None:
            continue
        if ev["eventId"] in first_bytes:
            assert first_bytes[ev["eventId"]] == out  # a re-send is byte-identical
            duplicates += 1
            continue
        first_bytes[ev["eventId"]] = out
        fresh += 1
        now = T0 + 100 * i
        if ev["ts"] != now:
            assert now - cfg.max_lateness_ms <= ev["ts"] < now
            late += 1
    malformed = sum(reasons.values())
    assert abs(malformed / n - cfg.malformed_share) < 0.015
    assert abs(duplicates / n - cfg.duplicate_share) < 0.015
    assert abs(late / fresh - cfg.late_share) < 0.02
    # a mix of malformations, each of them caught by a contract check
    assert set(reasons) == {
        "invalid_json",
        "not_object",
        "missing:eventId",
        "missing:ts",
        "bad:props",
        "bad:type",
        "bad:ts",
        "bad:profileId",
    }
    assert min(reasons.values()) > malformed / 8 * 0.6


def test_noise_does_not_break_sequences(noisy: Noisy) -> None:
    seen: set[str] = set()
    events = []
    for ev in noisy.events:
        if ev is not None and ev["eventId"] not in seen:
            seen.add(ev["eventId"])
            events.append(ev)
    check_sequences(events)


def test_late_events_never_negative() -> None:
    cfg = SyntheticConfig(profiles=20, seed=1, late_share=1.0, max_lateness_ms=3_600_000)
    for i, out in enumerate(SyntheticCustomers(cfg).take(500, 1000, 1000)):
        now = 1000 + 1000 * i
        ts = orjson.loads(out)["ts"]
        assert 0 <= ts < now and (ts == 0 or ts >= now - cfg.max_lateness_ms)


# ---------------------------------------------------------------- sequences


def check_sequences(events: list[dict[str, Any]]) -> None:
    """Stream-order sanity of orders, opportunities, tickets and messages per profile."""
    first: dict[str, str] = {}
    created: dict[str, tuple[str, float]] = {}
    paid: set[str] = set()
    refunded: set[str] = set()
    opp_stage: dict[str, int] = {}
    opp_closed: set[str] = set()
    open_tickets: dict[str, str] = {}
    last_type: dict[str, str] = {}
    sent: dict[str, tuple[str, str]] = {}
    for ev in events:
        pid, etype, props = ev["profileId"], ev["type"], ev["props"]
        first.setdefault(pid, etype)
        assert first[pid] == "signup", f"{pid} starts with {first[pid]}"
        if etype == "order_created":
            if ev["source"] != "pos":
                assert last_type[pid] == "checkout_started"
            created[props["orderId"]] = (pid, props["amount"])
        elif etype == "order_paid":
            assert created[props["orderId"]] == (pid, props["amount"])
            assert last_type[pid] == "order_created"
            assert props["orderId"] not in paid
            paid.add(props["orderId"])
        elif etype == "order_refunded":
            assert props["orderId"] in paid and props["orderId"] not in refunded
            refunded.add(props["orderId"])
        elif etype == "opportunity_created":
            assert props["stage"] == "lead" and props["opportunityId"] not in opp_stage
            opp_stage[props["opportunityId"]] = 0
        elif etype == "opportunity_stage_changed" or etype in SALES:
            oid = props["opportunityId"]
            assert oid in opp_stage and oid not in opp_closed
            if etype == "opportunity_stage_changed":
                assert props["fromStage"] == STAGES[opp_stage[oid]]
                opp_stage[oid] += 1
                assert props["stage"] == STAGES[opp_stage[oid]]
        elif etype in ("opportunity_won", "opportunity_lost"):
            oid = props["opportunityId"]
            assert opp_stage[oid] == 3 and oid not in opp_closed  # closes once, from negotiation
            opp_closed.add(oid)
        elif etype == "ticket_opened":
            assert pid not in open_tickets
            open_tickets[pid] = props["ticketId"]
        elif etype == "ticket_closed":
            assert open_tickets.pop(pid) == props["ticketId"]
        elif etype == "message_sent":
            sent[pid] = (props["channel"], props["template"])
        elif etype.startswith("message_") or etype in ("unsubscribe", "complaint"):
            assert sent[pid] == (props["channel"], props["template"])
        last_type[pid] = etype


def test_sequences_make_sense(clean: Stream) -> None:
    check_sequences(clean.events)
    types = Counter(ev["type"] for ev in clean.events)
    assert types["order_paid"] > 0.6 * types["order_created"]
    assert types["opportunity_won"] + types["opportunity_lost"] > 120


def test_no_messages_on_unsubscribed_channels(clean: Stream) -> None:
    unsubscribed: set[tuple[str, str]] = set()
    for ev in clean.events:
        key = (ev["profileId"], ev["props"].get("channel", ""))
        if ev["type"] == "message_sent":
            assert key not in unsubscribed
        elif ev["type"] == "unsubscribe":
            unsubscribed.add(key)
    assert unsubscribed


# ---------------------------------------------------------------- propensity rules


def test_rule_functions_move_the_right_way() -> None:
    assert win_probability(0.8, 10_000) > win_probability(0.2, 10_000)
    assert win_probability(0.5, 5_000) > win_probability(0.5, 50_000)
    hi = Traits(0.3, 0.5, 0.9, "Asia/Shanghai", "02-28")
    lo = Traits(0.3, 0.5, 0.1, "Asia/Shanghai", "02-28")
    assert churn_probability(hi) > 0.9 > 0.1 > churn_probability(lo)
    assert churn_probability(Traits(0.9, 0.5, 0.6, "Europe/Berlin", "01-01")) < churn_probability(
        Traits(0.1, 0.5, 0.6, "Europe/Berlin", "01-01")
    )


def test_wins_follow_win_probability(clean: Stream) -> None:
    profiles = clean.gen.profiles
    amount: dict[str, tuple[str, float]] = {}
    activities: Counter[str] = Counter()
    closed: list[tuple[float, bool]] = []
    worked: dict[bool, list[int]] = {True: [], False: []}
    for ev in clean.events:
        props = ev["props"]
        if ev["type"] == "opportunity_created":
            amount[props["opportunityId"]] = (ev["profileId"], props["amount"])
        elif ev["type"] in SALES:
            activities[props["opportunityId"]] += 1
        elif ev["type"] in ("opportunity_won", "opportunity_lost"):
            oid = props["opportunityId"]
            pid, amt = amount[oid]
            value = profiles[int(pid[1:])].traits.value
            closed.append((win_probability(value, amt), ev["type"].endswith("won")))
            worked[ev["type"].endswith("won")].append(activities[oid])
    # deals that will be won keep the buyer engaged: more activity per deal
    won_acts, lost_acts = worked[True], worked[False]
    assert sum(won_acts) / len(won_acts) > 2 * sum(lost_acts) / len(lost_acts)
    closed.sort()
    half = len(closed) // 2
    low = sum(won for _, won in closed[:half]) / half
    high = sum(won for _, won in closed[half:]) / (len(closed) - half)
    assert high - low > 0.08, (low, high)
    # calibrated, not only ordered: the win rate matches the mean probability
    expected = sum(p for p, _ in closed) / len(closed)
    actual = sum(won for _, won in closed) / len(closed)
    assert abs(actual - expected) < 3 * (0.25 / len(closed)) ** 0.5 + 0.02


def test_churned_profiles_follow_churn_probability(clean: Stream) -> None:
    counts: Counter[str] = Counter(ev["profileId"] for ev in clean.events)
    last_ts: dict[str, int] = {ev["profileId"]: ev["ts"] for ev in clean.events}
    churned = [p for p in clean.gen.profiles if p.churned]
    stayed = [p for p in clean.gen.profiles if not p.churned]
    assert churned and stayed
    for p in churned:
        assert p.is_churner and counts[p.profile_id] == p.churn_after
        assert last_ts[p.profile_id] == p.silent_since  # nothing after it went silent
    for p in stayed:  # churners that stayed had not used up their activity yet
        assert not p.is_churner or counts[p.profile_id] < p.churn_after

    def mean(ps: list[Any]) -> float:
        return sum(churn_probability(p.traits) for p in ps) / len(ps)

    assert mean(churned) > mean(stayed) + 0.2


def first_churned(gen: SyntheticCustomers, now: int, limit: int) -> tuple[int, int]:
    for i in range(limit):
        gen.next_event(now + i)
        for p in gen.profiles:
            if p.churned:
                return p.index, now + i
    raise AssertionError("nobody churned")


def test_silent_profiles_are_won_back_after_the_silence() -> None:
    gen = SyntheticCustomers(SyntheticConfig(profiles=30, seed=8))
    index, now = first_churned(gen, T0, 5000)
    pid = gen.profiles[index].profile_id
    during = [orjson.loads(e)["profileId"] for e in gen.take(2000, now + 1, 1000)]
    assert pid not in during
    later = now + CHURN_SILENCE_MS + 1
    after = [orjson.loads(e)["profileId"] for e in gen.take(3000, later, 1000)]
    assert pid in after


def test_a_lone_silent_profile_does_not_stall_the_stream() -> None:
    seed = next(
        s
        for s in range(500)
        if SyntheticCustomers(SyntheticConfig(profiles=1, seed=s)).profiles[0].is_churner
    )
    gen = SyntheticCustomers(SyntheticConfig(profiles=1, seed=seed))
    out = gen.take(200, T0, 10)
    assert len(out) == gen.generated == 200
    assert all(contract_error(e, 1) is None for e in out)
    assert gen.profiles[0].churned


def test_activity_follows_engagement(clean: Stream) -> None:
    counts: Counter[str] = Counter(ev["profileId"] for ev in clean.events)
    loyal = sorted((p for p in clean.gen.profiles if not p.is_churner), key=lambda p: p.traits.engagement)
    half = len(loyal) // 2
    quiet = sum(counts[p.profile_id] for p in loyal[:half]) / half
    busy = sum(counts[p.profile_id] for p in loyal[half:]) / (len(loyal) - half)
    assert busy > 2 * quiet


def test_value_drives_spending(clean: Stream) -> None:
    spent: defaultdict[str, float] = defaultdict(float)
    for ev in clean.events:
        if ev["type"] == "order_paid":
            spent[ev["profileId"]] += ev["props"]["amount"]
    by_value = sorted(clean.gen.profiles, key=lambda p: p.traits.value)
    half = len(by_value) // 2

    def per_event(ps: list[Any]) -> float:
        return sum(spent[p.profile_id] for p in ps) / sum(max(p.events, 1) for p in ps)

    assert per_event(by_value[half:]) > 1.5 * per_event(by_value[:half])
