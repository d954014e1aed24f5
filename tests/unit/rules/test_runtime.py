"""Journeys for one profile, pure: triggers, entry policy, waits in event time, branches,
A/B arms, quiet hours, version pinning, pause and disable."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flows.core.contract import Event
from flows.core.messages import Intent
from flows.core.resources import config_dir
from rules.evaluate import Context, arm_of
from rules.journeys.load import load_journey
from rules.journeys.parse import parse_journey
from rules.live import LiveJourney, TriggerIndex
from rules.program import compile_journey
from rules.runtime import ProfileJourneys

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_790_000_000_000  # 2026-09-21 ~22:13 UTC


class Catalog:
    """A stand-in for rules.store.JourneyCatalog (a `rules.live.LiveJourneys`)."""

    def __init__(self, *journeys: Any, state: str = "enabled", default_tz: str = "UTC") -> None:
        self.default_tz = default_tz
        self.versions = {(j.id, j.version): j for j in journeys}
        self.current = {j.id: LiveJourney(j, state) for j in journeys}

    @property
    def triggers(self) -> TriggerIndex:
        return TriggerIndex.of(self.current)  # tests change `current` in place

    def version(self, jid: str, v: int) -> Any:
        return self.versions[(jid, v)]


def ev(etype: str, ts: int, eid: str = "", **props: Any) -> Event:
    return Event(eid or f"{etype}-{ts}", "p1", etype, ts, "app", props, {}, {}, ts, "t", 0, 0)


def sends(out: list[Any]) -> list[tuple[str, str, str]]:
    return [(i.kind, i.node_id, i.template) for i in out if isinstance(i, Intent)]


def warmup(version: int = 1) -> Any:
    return replace(load_journey(config_dir() / "journeys" / "new_user_warmup.yaml"), version=version)


def test_warmup_waits_an_hour_of_event_time_then_sends_and_branches() -> None:
    cat = Catalog(warmup())
    pj = ProfileJourneys()
    out = pj.on_events("p1", [ev("signup", T0)], cat, Context(), T0)
    assert sends(out) == []  # waiting
    assert pj.next_due(cat) == T0 + HOUR
    late: list[Any] = []
    pj.advance("p1", T0 + HOUR - 1, cat, Context(), 0, late)
    assert late == []
    pj.advance("p1", T0 + HOUR, cat, Context(tags=frozenset({"high_value"})), 0, late)
    assert sends(late) == [("send", "welcome", "welcome"), ("send", "vip_offer", "vip_offer")]
    assert all(i.ts_ms == T0 + HOUR for i in late)
    assert pj.instances == []  # finished
    # entry policy once: a second signup does not enter again
    assert pj.on_events("p1", [ev("signup", T0 + 2 * HOUR, "again")], cat, Context(), 0) == []
    assert pj.instances == []


def test_action_ids_are_deterministic_across_replays() -> None:
    runs = []
    for _ in range(2):
        cat = Catalog(warmup())
        pj = ProfileJourneys()
        pj.on_events("p1", [ev("signup", T0, "s1")], cat, Context(), T0)
        out: list[Any] = []
        pj.advance("p1", T0 + 2 * HOUR, cat, Context(), 0, out)
        runs.append([i.action_id for i in out])
    assert runs[0] == runs[1] and len(set(runs[0])) == 2


def absence(within: str = "30m", **extra: Any) -> Any:
    return parse_journey(
        {
            "id": "cart", "name": "c", "priority": 5, "entry": {"policy": "every_time"},
            "trigger": {"absence": {"after": "add_to_cart", "missing": "order_paid", "within": within}},
            "nodes": [{"id": "remind", "type": "send", "channel": "push", "template": "cart"}], **extra,
        },
        "t",
    )  # fmt: skip


def test_absence_fires_when_the_window_passes_and_never_after_the_missing_event() -> None:
    cat = Catalog(absence())
    pj = ProfileJourneys()
    assert pj.on_events("p1", [ev("add_to_cart", T0, "x1")], cat, Context(), T0) == []
    assert pj.next_due(cat) == T0 + 30 * MIN
    # paid within the window: disarmed, nothing ever fires
    assert pj.on_events("p1", [ev("order_paid", T0 + 10 * MIN)], cat, Context(), 0) == []
    out: list[Any] = []
    pj.advance("p1", T0 + 5 * HOUR, cat, Context(), 0, out)
    assert out == [] and pj.next_due(cat) == -1
    # abandoned: fires at X + 30 min of event time with X as the trigger event
    pj.on_events("p1", [ev("add_to_cart", T0 + 6 * HOUR, "x2")], cat, Context(), 0)
    pj.advance("p1", T0 + 6 * HOUR + 30 * MIN, cat, Context(), 0, out)
    assert sends(out) == [("send", "remind", "cart")]
    assert out[0].trigger_event_id == "x2" and out[0].ts_ms == T0 + 6 * HOUR + 30 * MIN
    # a new event after the deadline fires the absence first, then is folded in
    pj.on_events("p1", [ev("add_to_cart", T0 + 7 * HOUR, "x3")], cat, Context(), 0)
    got = pj.on_events("p1", [ev("page_view", T0 + 8 * HOUR)], cat, Context(), 0)
    assert [i.trigger_event_id for i in got if isinstance(i, Intent)] == ["x3"]


def test_quiet_hours_defer_to_the_local_window_end() -> None:
    j = absence(quiet_hours={"start": "21:00", "end": "08:00", "action": "defer"})
    cat = Catalog(j)
    pj = ProfileJourneys()
    pj.tz = "Asia/Shanghai"
    t = 1_790_000_000_000 - (1_790_000_000_000 % (24 * HOUR)) + 15 * HOUR  # 15:00 UTC = 23:00 Shanghai
    pj.on_events("p1", [ev("add_to_cart", t, "x")], cat, Context(), 0)
    out: list[Any] = []
    pj.advance("p1", t + 40 * MIN, cat, Context(), 0, out)
    assert [i.kind for i in out] == ["quiet_hours_deferred"]
    ends = out[0].detail["until_ms"]
    assert ends == t - 15 * HOUR + 24 * HOUR  # 08:00 Shanghai = 00:00 UTC next day
    pj.advance("p1", ends, cat, Context(), 0, out)
    assert [i.kind for i in out] == ["quiet_hours_deferred", "send"] and out[1].ts_ms == ends
    # the same instant in Berlin (17:00) is not quiet: sent at once
    pj2 = ProfileJourneys()
    pj2.tz = "Europe/Berlin"
    pj2.on_events("p1", [ev("add_to_cart", t, "x")], cat, Context(), 0)
    out2: list[Any] = []
    pj2.advance("p1", t + 40 * MIN, cat, Context(), 0, out2)
    assert [i.kind for i in out2] == ["send"]


def test_a_profile_without_a_timezone_follows_the_catalog_default() -> None:
    j = absence(quiet_hours={"start": "21:00", "end": "08:00", "action": "defer"})
    t = 1_790_000_000_000 - (1_790_000_000_000 % (24 * HOUR)) + 15 * HOUR  # 15:00 UTC = 23:00 Shanghai

    def first(cat: Catalog, *events: Event) -> str:
        pj = ProfileJourneys()
        pj.on_events("p1", [*events, ev("add_to_cart", t, "x")], cat, Context(), 0)
        out: list[Any] = []
        pj.advance("p1", t + 40 * MIN, cat, Context(), 0, out)
        return out[0].kind

    assert first(Catalog(j, default_tz="Asia/Shanghai")) == "quiet_hours_deferred"
    assert first(Catalog(j, default_tz="UTC")) == "send"  # 15:40 in UTC: not quiet
    # its own timezone, once an event names it, wins over the default
    named = ev("page_view", t - HOUR, "v", timezone="Europe/Berlin")
    assert first(Catalog(j, default_tz="Asia/Shanghai"), named) == "send"


def test_a_snapshot_of_the_older_shape_reads_its_utc_as_unknown_and_the_new_shape_round_trips() -> None:
    pj = ProfileJourneys()
    pj.tz = "UTC"
    st = pj.__getstate__()
    again = ProfileJourneys.__new__(ProfileJourneys)
    again.__setstate__(st)
    assert again.tz == "UTC"  # named by an event: kept
    old = ProfileJourneys.__new__(ProfileJourneys)
    old.__setstate__(st[:10])  # written when "unknown" was stored as UTC
    assert old.tz == ""


def test_version_pinning_pause_and_disable() -> None:
    v1 = warmup(1)
    v2 = replace(parse_journey({**_canon(v1), "nodes": [{"id": "other", "type": "send", "channel": "email",
                                                          "template": "v2"}]}, "t"), version=2)  # fmt: skip
    cat = Catalog(v1)
    pj = ProfileJourneys()
    pj.on_events("p1", [ev("signup", T0)], cat, Context(), 0)
    cat.versions[("new_user_warmup", 2)] = v2
    cat.current["new_user_warmup"] = LiveJourney(v2, "paused")
    out: list[Any] = []
    pj.advance("p1", T0 + 2 * HOUR, cat, Context(), 0, out)
    assert out == [] and len(pj.instances) == 1  # paused: holds
    cat.current["new_user_warmup"] = LiveJourney(v2, "enabled")
    pj.advance("p1", T0 + 2 * HOUR, cat, Context(), 0, out)
    assert [(i.template, i.journey_version) for i in out] == [
        ("welcome", 1),
        ("new_user_guide", 1),
    ]  # pinned v1
    pj2 = ProfileJourneys()
    pj2.on_events("p1", [ev("signup", T0)], Catalog(v1), Context(), 0)
    out = []
    pj2.advance("p1", T0 + 2 * HOUR, Catalog(v1, state="disabled"), Context(), 0, out)
    assert out == [] and pj2.instances == []  # disabled: exits


def _canon(j: Any) -> dict[str, Any]:
    from rules.journeys.canonical import to_canonical

    return to_canonical(j)


def test_ab_split_is_stable_and_holdout_records_and_leaves() -> None:
    j = load_journey(config_dir() / "journeys" / "cart_abandoned.yaml")
    prog = compile_journey(j)
    assert prog[-1].kind in ("send", "tag", "exit", "task", "ticket", "wait", "branch", "split")
    weights = (45, 45, 10)
    arms = [arm_of(f"p{i}", "cart_abandoned", weights) for i in range(10_000)]
    share = [arms.count(k) / len(arms) for k in range(3)]
    assert abs(share[0] - 0.45) < 0.02 and abs(share[2] - 0.10) < 0.01
    assert arms == [arm_of(f"p{i}", "cart_abandoned", weights) for i in range(10_000)]


def test_score_segment_and_tag_triggers_ride_on_engine_events() -> None:
    j = parse_journey(
        {"id": "winback", "name": "w", "priority": 60, "entry": {"policy": "once_per", "days": 7},
         "trigger": {"score": {"model": "churn", "threshold": "churn_risk_high"}},
         "nodes": [{"id": "call", "type": "task", "assignee": "owner", "due": "10m", "title": "Call"},
                   {"id": "mail", "type": "send", "channel": "email", "template": "winback"},
                   {"id": "mark", "type": "tag", "add": "winback_sent"}]},
        "t",
    )  # fmt: skip
    cat = Catalog(j)
    pj = ProfileJourneys()
    props = {"model": "churn", "threshold": "churn_risk_high", "direction": "up", "score": 0.81, "version": 4,
             "explanation": {"profile_age_days": -1.2, "sessions_7d": -0.4}}  # fmt: skip
    crossed = Event("c1", "p1", "score_crossed", T0, "engine", props, {}, {}, T0, "engine", 0, -1)
    out = pj.on_events("p1", [crossed], cat, Context(), T0)
    assert [i.kind for i in out if isinstance(i, Intent)] == ["task", "send"]
    task = next(i for i in out if isinstance(i, Intent) and i.kind == "task")
    assert task.detail == {"assignee": "owner", "due_ms": T0 + 10 * MIN}
    mail = next(i for i in out if isinstance(i, Intent) and i.kind == "send")
    assert mail.detail["explanation"] == {"profile_age_days": -1.2, "sessions_7d": -0.4}  # why it fired
    assert mail.detail["score"] == {
        "model": "churn",
        "threshold": "churn_risk_high",
        "score": 0.81,
        "version": 4,
    }
    tagged = [e for e in out if isinstance(e, Event)]
    assert [(e.type, e.props["tag"]) for e in tagged] == [("tag_added", "winback_sent")]
    # once per 7 days: a second crossing two days later does not re-enter; nine days later it does
    again = crossed._replace(event_id="c2", ts_ms=T0 + 2 * 24 * HOUR)
    assert not [i for i in pj.on_events("p1", [again], cat, Context(), 0) if isinstance(i, Intent)]
    later = crossed._replace(event_id="c3", ts_ms=T0 + 9 * 24 * HOUR)
    assert [i.kind for i in pj.on_events("p1", [later], cat, Context(), 0) if isinstance(i, Intent)] == [
        "task",
        "send",
    ]


def test_unsubscribe_and_complaint_become_suppressions_before_later_sends() -> None:
    cat = Catalog(warmup())
    pj = ProfileJourneys()
    evs = [ev("signup", T0), ev("unsubscribe", T0 + 1, "u1", channel="sms"), ev("complaint", T0 + 2, "c1")]
    out = pj.on_events("p1", evs, cat, Context(), T0)
    sup = [(i.kind, i.channel, i.template) for i in out if isinstance(i, Intent)]
    assert sup == [("suppress", "sms", "unsubscribe"), ("suppress", "", "complaint")]


def test_consent_events_become_consent_records_with_channel_and_version() -> None:
    cat = Catalog(warmup())
    pj = ProfileJourneys()
    evs = [
        ev("consent_granted", T0, "g1", channel="sms", version="2026-01"),
        ev("consent_revoked", T0 + 1, "r1"),  # no channel: every channel
        ev("consent_granted", T0 + 2, "g2", channel="fax"),  # unknown: flagged, never widened
        ev("consent_granted", T0 + 3, "g3"),  # a grant must name its channel
        ev("consent_granted", T0 + 4, "g4", channel="*"),  # every channel, said explicitly
    ]
    out = pj.on_events("p1", evs, cat, Context(), T0)
    got = [
        (i.kind, i.channel, i.template, i.trigger_event_id, i.ts_ms, i.detail)
        for i in out
        if isinstance(i, Intent)
    ]
    assert got == [
        ("consent", "sms", "consent_granted", "g1", T0, {"version": "2026-01"}),
        ("consent", "", "consent_revoked", "r1", T0 + 1, {"version": "", "unknown": ""}),
        ("consent", "", "consent_granted", "g2", T0 + 2, {"version": "", "unknown": "fax"}),
        ("consent", "", "consent_granted", "g3", T0 + 3, {"version": "", "unknown": ""}),
        ("consent", "", "consent_granted", "g4", T0 + 4, {"version": ""}),
    ]


def test_a_complaint_is_charged_to_the_journey_that_sent_the_template() -> None:
    cat = Catalog(warmup(), absence())
    pj = ProfileJourneys()
    pj.on_events("p1", [ev("signup", T0), ev("add_to_cart", T0, "x")], cat, Context(), T0)
    out: list[Any] = []
    pj.advance("p1", T0 + 2 * HOUR, cat, Context(), 0, out)
    assert {i.template for i in out if isinstance(i, Intent)} == {"welcome", "new_user_guide", "cart"}
    got = pj.on_events("p1", [ev("complaint", T0 + 3 * HOUR, "c1", template="welcome")], cat, Context(), 0)
    blamed = [
        (i.kind, i.journey_id, i.template) for i in got if isinstance(i, Intent) and i.kind == "complaint"
    ]
    assert blamed == [("complaint", "new_user_warmup", "welcome")]
    got = pj.on_events("p1", [ev("complaint", T0 + 4 * HOUR, "c2")], cat, Context(), 0)  # names no template
    blamed = [(i.journey_id, i.template) for i in got if isinstance(i, Intent) and i.kind == "complaint"]
    assert blamed == [("new_user_warmup", "new_user_guide")]  # the last one that messaged the profile


def test_date_trigger_fires_yearly_at_local_time_and_inactivity_once_per_silence() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    bday = parse_journey(
        {"id": "bday", "name": "b", "priority": 5, "entry": {"policy": "every_time"},
         "trigger": {"date": {"field": "props.birthday", "format": "MM-DD", "offset": "-1d", "at": "10:00"}},
         "nodes": [{"id": "gift", "type": "send", "channel": "wecom", "template": "birthday_coupon"}]},
        "t",
    )  # fmt: skip
    idle = parse_journey(
        {"id": "idle", "name": "i", "priority": 5, "entry": {"policy": "once"},
         "trigger": {"inactivity": {"for": "14d"}},
         "nodes": [{"id": "nudge", "type": "send", "channel": "email", "template": "miss_you"}]},
        "t",
    )  # fmt: skip
    cat = Catalog(bday, idle)
    pj = ProfileJourneys()
    t = 1_767_225_600_000  # 2026-01-01T00:00Z
    pj.on_events("p1", [ev("signup", t, "s", birthday="03-15", timezone="Asia/Shanghai")], cat, Context(), 0)
    due = pj.next_due(cat)  # the first thing due: 14 days of silence after the signup
    assert (
        datetime.fromtimestamp(due / 1000, ZoneInfo("Asia/Shanghai")).isoformat()
        == "2026-01-15T08:00:00+08:00"
    )
    out: list[Any] = []
    year = 365 * 24 * HOUR
    pj.advance("p1", t + 2 * year, cat, Context(), 0, out)
    fired = [
        (i.journey_id, datetime.fromtimestamp(i.ts_ms / 1000, ZoneInfo("Asia/Shanghai")).isoformat())
        for i in out
    ]
    # the inactivity journey fired once (14 days after signup, entry once); the birthday one
    # for the next occurrence on its day, the day before the birthday at 10:00 local
    assert ("idle", "2026-01-15T08:00:00+08:00") in fired
    assert ("bday", "2026-03-14T10:00:00+08:00") in fired
    # a wake-up two years late catches up on every occurrence in between, in order
    assert ("bday", "2027-03-14T10:00:00+08:00") in fired
    assert [ts for _, ts in fired] == sorted(ts for _, ts in fired)
    nxt = datetime.fromtimestamp(pj.next_due(cat) / 1000, ZoneInfo("Asia/Shanghai")).isoformat()
    assert nxt == "2028-03-14T10:00:00+08:00"


def test_what_is_due_is_decided_earliest_first_however_late_the_profile_wakes() -> None:
    """The cart reminder (due at +30 min) precedes the welcome (due at +1 h) whether the
    profile is woken once at +2 h or at each deadline: shared caps then go to the same
    sends in a live run, a replay and a restart."""

    def decided(wakes: list[int]) -> list[tuple[str, int]]:
        cat = Catalog(warmup(), absence())
        pj = ProfileJourneys()
        pj.on_events("p1", [ev("signup", T0), ev("add_to_cart", T0, "x")], cat, Context(), T0)
        out: list[Any] = []
        for t in wakes:
            pj.advance("p1", t, cat, Context(), 0, out)
        return [(i.template, i.ts_ms) for i in out if isinstance(i, Intent)]

    once = decided([T0 + 2 * HOUR])
    assert [t for t, _ in once] == ["cart", "welcome", "new_user_guide"]
    assert once == decided([T0 + 40 * 60_000, T0 + 2 * HOUR]) == decided([T0 + HOUR, T0 + 2 * HOUR])
    assert [ts for _, ts in once] == sorted(ts for _, ts in once)


def _crossed(ts: int, eid: str) -> Event:
    props = {"model": "churn", "threshold": "churn_risk_high", "direction": "up", "score": 0.8, "version": 4}
    return Event(eid, "p1", "score_crossed", ts, "engine", props, {}, {}, ts, "engine", 0, -1)


def _intents(out: list[Any]) -> list[tuple[str, int]]:
    return [(i.kind, i.ts_ms) for i in out if isinstance(i, Intent)]


def test_winback_waits_for_a_quiet_customer_and_never_follows_a_purchase() -> None:
    """The shipped churn_winback: entry needs 30 days without any of the customer's own
    events and a churn score of 0.7 or more; a risk crossing at a purchase waits."""
    cat = Catalog(replace(load_journey(config_dir() / "journeys" / "churn_winback.json"), version=1))
    day = 24 * HOUR
    risky = Context(scores={"churn": 0.8})
    # 1. the score crosses at a purchase: not now; the customer buys again 10 days later
    pj = ProfileJourneys()
    assert _intents(pj.on_events("p1", [ev("order_paid", T0), _crossed(T0, "c1")], cat, risky, T0)) == []
    assert pj.next_due(cat) == T0 + 30 * day  # deferred to when the customer will be quiet
    assert _intents(pj.on_events("p1", [ev("order_paid", T0 + 10 * day)], cat, risky, 0)) == []
    out: list[Any] = []
    pj.advance("p1", T0 + 90 * day, cat, risky, 0, out)
    assert _intents(out) == [] and not pj.pending  # came back: no win-back
    # 2. the same crossing, then silence: it enters when the silence reaches 30 days
    pj = ProfileJourneys()
    pj.on_events("p1", [ev("order_paid", T0), _crossed(T0, "c1")], cat, risky, T0)
    out = []
    pj.advance("p1", T0 + 30 * day - 1, cat, risky, 0, out)
    assert out == []
    pj.advance("p1", T0 + 31 * day, cat, risky, 0, out)
    assert _intents(out) == [("task", T0 + 30 * day), ("send", T0 + 30 * day)]
    # ... unless the risk has fallen by then
    pj = ProfileJourneys()
    pj.on_events("p1", [ev("order_paid", T0), _crossed(T0, "c1")], cat, risky, T0)
    out = []
    pj.advance("p1", T0 + 31 * day, cat, Context(scores={"churn": 0.5}), 0, out)
    assert _intents(out) == [] and not pj.pending
    # 3. risk that rose while the customer was silent enters at once
    pj = ProfileJourneys()
    pj.on_events("p1", [ev("page_view", T0)], cat, Context(), T0)
    out = pj.on_events("p1", [_crossed(T0 + 45 * day, "c2")], cat, risky, 0)
    assert _intents(out) == [("task", T0 + 45 * day), ("send", T0 + 45 * day)]


def test_quiet_for_reads_the_types_it_names_in_branches_too() -> None:
    j = parse_journey(
        {"id": "nudge", "name": "n", "priority": 5, "entry": {"policy": "every_time"},
         "trigger": {"event": {"type": "page_view"}},
         "nodes": [{"type": "branch", "if": [{"quiet_for": "7d", "types": ["order_paid"]}],
                    "then": [{"id": "nudge", "type": "send", "channel": "push", "template": "nudge"}]}]},
        "t",
    )  # fmt: skip
    cat = Catalog(j)
    assert cat.triggers.quiet_types == frozenset({"order_paid"})
    pj = ProfileJourneys()
    day = 24 * HOUR
    # never bought: quiet; bought 2 days ago: not; 8 days ago: quiet again (page views count not)
    assert sends(pj.on_events("p1", [ev("page_view", T0)], cat, Context(), 0)) == [("send", "nudge", "nudge")]
    pj.on_events("p1", [ev("order_paid", T0 + day)], cat, Context(), 0)
    assert sends(pj.on_events("p1", [ev("page_view", T0 + 3 * day)], cat, Context(), 0)) == []
    assert sends(pj.on_events("p1", [ev("page_view", T0 + 9 * day)], cat, Context(), 0)) == [
        ("send", "nudge", "nudge")
    ]


def test_a_profile_record_is_read_by_conditions_and_send_variables_and_its_consent_recorded() -> None:
    j = parse_journey(
        {
            "id": "gold", "name": "g", "priority": 5, "entry": {"policy": "every_time"},
            "trigger": {"event": {"type": "order_paid"}},
            "nodes": [{"type": "branch", "if": [{"attribute": "tier", "op": "==", "value": "gold"}],
                       "then": [{"id": "thanks", "type": "send", "channel": "sms", "template": "thanks",
                                 "vars": {"n": "{{profile.name}}", "c": "{{profile.city}}",
                                          "t": "{{profile.tags}}"}}],
                       "else": [{"id": "plain", "type": "send", "channel": "sms", "template": "plain"}]}],
        },
        "t",
    )  # fmt: skip
    cat = Catalog(j)
    pj = ProfileJourneys()
    ident = Event("i1", "p1", "identify", T0, "crm", {"tier": "gold", "name": "张*", "city": "Shanghai",
                  "tags": ["vip", "b2b"], "consent": {"time": T0 - 5, "ver": "v3"}}, {}, {"props.name": "h"},
                  T0, "t", 0, 0)  # fmt: skip
    out = pj.on_events("p1", [ident], cat, Context(), T0)
    consent = [(i.kind, i.channel, i.template, i.ts_ms, i.detail) for i in out if isinstance(i, Intent)]
    assert consent == [("consent", "", "consent_granted", T0 - 5, {"version": "v3"})]  # every channel
    older = ev("profile_updated", T0 - 10, "u0", tier="silver")  # late and older: changes nothing
    out = pj.on_events("p1", [older, ev("order_paid", T0 + 1, "o1")], cat, Context(), T0)
    sent = [i for i in out if isinstance(i, Intent) and i.kind == "send"]
    assert [i.node_id for i in sent] == ["thanks"]
    # the masked name is left for the sender; the rest is filled
    assert sent[0].detail["vars"] == {"n": "{{profile.name}}", "c": "Shanghai", "t": "vip,b2b"}
    out = pj.on_events("p1", [ev("profile_updated", T0 + 2, "u1", tier=None), ev("order_paid", T0 + 3, "o2")],
                       cat, Context(), T0)  # fmt: skip
    assert [i.node_id for i in out if isinstance(i, Intent) and i.kind == "send"] == ["plain"]
    again = ProfileJourneys.__new__(ProfileJourneys)
    again.__setstate__(pj.__getstate__())
    assert again.attrs == pj.attrs and again.attrs is not None and again.attrs["city"] == ("Shanghai", T0)
