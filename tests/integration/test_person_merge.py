"""Two persons' guard records folded into one on a real Valkey: the strictest wins, caps
count the sends of both, a later grant still lifts an unsubscribe, and folding again
changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import redis

from flows.core.durations import DAY_MS
from flows.core.messages import Intent
from flows.core.settings import JourneySettings
from rules.actions import GuardStep
from rules.guards import Guards, record_consent, set_consent, unsubscribe
from rules.person_merge import merge_records
from rules.policy import Cap, cap_key, consent_key, suppress_at_key, suppress_key
from sinks.identity_graph import Identifier, IdentityGraph
from sinks.retry import RetryPolicy
from tests.integration.test_breaker import cart_journey
from tests.integration.test_guards import T0, request

FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
HOUR = 3_600_000
TWO_A_DAY = Cap("profile", None, 2, DAY_MS)


@pytest.fixture
def guards(valkey: str) -> Iterator[Guards]:
    g = Guards.from_url(valkey, timeout_s=5, retry=FAST)
    yield g
    g.close()


def status(guards: Guards, pid: str, channel: str = "email", at: int = T0 + 3 * HOUR) -> str:
    template = f"t-{uuid.uuid4().hex[:6]}"
    [d] = guards.decide([request(pid, channel=channel, template=template, caps=(TWO_A_DAY,), now_ms=at)])
    return d.status


def test_the_strictest_of_two_persons_records_holds_for_the_one_they_became(guards: Guards) -> None:
    c: redis.Redis = guards.client  # type: ignore[assignment]
    app, mini = f"app-{uuid.uuid4().hex[:8]}", f"mini-{uuid.uuid4().hex[:8]}"
    # the mini-program's person: unsubscribed from SMS, granted WeCom, complained about push
    unsubscribe(c, mini, "sms", FAST, T0, "u1")
    set_consent(c, mini, "wecom", True, FAST, T0 + 1, "v2")
    unsubscribe(c, mini, "push", FAST, T0 + 2, "c1", kind="complaint")
    # ... and had two sends today; the app's person granted SMS after that unsubscribe
    assert [status(guards, mini, at=T0 + HOUR + i) for i in range(2)] == ["sent", "sent"]
    assert status(guards, mini, "sms") == "suppressed"
    set_consent(c, app, "sms", True, FAST, T0 + HOUR, "v1")

    merged = T0 + 2 * HOUR
    assert merge_records(c, mini, app, merged, "m1", FAST) > 0
    assert status(guards, app, "sms") == "suppressed"  # the unsubscribe holds despite the grant
    assert c.hget(suppress_at_key(app), "sms") == f"{merged}|unsubscribe".encode()
    assert c.hget(suppress_at_key(app), "push") == f"{merged}|complaint".encode()
    assert c.hget(consent_key(app), "wecom") == b"1"
    assert status(guards, app, "email") == "capped"  # two sends today already, under the mini-program
    assert merge_records(c, mini, app, merged, "m1", FAST) == 0  # a replayed merge changes nothing

    # a grant after the merge lifts the unsubscribe, never the complaint
    record_consent(c, app, "grant", None, merged + 1, "v3", "g1")
    assert sorted(c.smembers(suppress_key(app))) == [b"push"]


def test_a_refusal_holds_and_a_grant_fills_only_a_channel_without_a_record(guards: Guards) -> None:
    c: redis.Redis = guards.client  # type: ignore[assignment]
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    set_consent(c, a, "email", True, FAST, T0 + 5, "new")
    set_consent(c, b, "email", False, FAST, T0, "old")
    set_consent(c, b, "sms", True, FAST, T0, "b-sms")
    set_consent(c, a, "sms", False, FAST, T0 + 9, "a-sms")
    merge_records(c, b, a, T0 + HOUR, "m2", FAST)
    got = {k.decode(): v.decode() for k, v in c.hgetall(consent_key(a)).items()}
    assert got["email"] == "0" and got["email:at"].startswith(f"{T0 + HOUR}|old|")
    assert got["sms"] == "0" and got["sms:at"].startswith(f"{T0 + HOUR}|a-sms")


@pytest.mark.parametrize(
    "loser_says, winner_says",
    [
        ((("sms", True),), (("*", False),)),  # the winner refused everything after the loser's grant
        ((("*", False),), (("sms", True),)),  # the loser refused everything after the winner's grant
    ],
)
def test_a_refusal_of_every_channel_holds_against_a_channel_grant_on_the_other_side(
    guards: Guards, loser_says, winner_says
) -> None:
    c: redis.Redis = guards.client  # type: ignore[assignment]
    loser, winner = f"l-{uuid.uuid4().hex[:8]}", f"w-{uuid.uuid4().hex[:8]}"
    for pid, says, at in ((loser, loser_says, T0), (winner, winner_says, T0 + HOUR)):
        for channel, granted in says:
            set_consent(c, pid, None if channel == "*" else channel, granted, FAST, at)
    merge_records(c, loser, winner, T0 + 2 * HOUR, "m", FAST)
    assert status(guards, winner, "sms") == "no_consent"


def test_a_replayed_merge_does_not_undo_a_later_resubscribe_and_an_untimed_refusal_stays(
    guards: Guards,
) -> None:
    c: redis.Redis = guards.client  # type: ignore[assignment]
    loser, winner = f"l-{uuid.uuid4().hex[:8]}", f"w-{uuid.uuid4().hex[:8]}"
    unsubscribe(c, loser, "email", FAST, T0, "u")
    c.hset(consent_key(loser), "push", "0")  # a refusal recorded before records had times
    merge_records(c, loser, winner, T0 + HOUR, "m", FAST)
    assert status(guards, winner, "email") == "suppressed"
    record_consent(c, winner, "grant", "email", T0 + 2 * HOUR, "v", "g")  # re-subscribes
    assert merge_records(c, loser, winner, T0 + HOUR, "m", FAST) == 0  # the merge replayed
    assert status(guards, winner, "email", at=T0 + 3 * HOUR) == "sent"
    assert c.hget(consent_key(winner), "push") == b"0" and c.hget(consent_key(winner), "push:at") is None
    record_consent(c, winner, "grant", "push", T0 + 3 * HOUR, "v", "g2")
    assert status(guards, winner, "push", at=T0 + 4 * HOUR) == "no_consent"  # never overridden


class Persons(NamedTuple):
    """A guards step routing by person, on a database of its own, with the shipped
    cart-abandoned journey (one push a day), and two persons the graph will merge."""

    step: GuardStep
    client: redis.Redis
    graph: IdentityGraph
    journey: str
    winner: str
    loser: str

    def send(self, pid: str, n: int, ts: int) -> Intent:
        return Intent(
            "send", f"a{n}", pid, self.journey, 1, "remind_now", "push", f"t{n}", "a", 5, f"e{n}", ts, ts, {}
        )

    def merge(self, ts: int) -> Intent:
        return Intent(
            "merge", "m1", self.winner, "", 0, "", "", "", "", 0, "login", ts, ts, {"merged": self.loser}
        )

    def link(self) -> None:
        (r,) = self.graph.resolve([(T0 + 5, [Identifier("phone", "w"), Identifier("deviceId", "l")])])
        assert r.person == self.winner and r.merges


@pytest.fixture
def persons(valkey: str) -> Iterator[Persons]:
    url = valkey.rsplit("/", 1)[0] + "/12"
    client, j, catalog = cart_journey(url)
    step = GuardStep(url, 2.0, FAST, JourneySettings(caps=(), dedupe_window_s=0), catalog, persons=True)
    graph = IdentityGraph(client, FAST)
    w, lo = graph.resolve([(T0 - 10, [Identifier("phone", "w")]), (T0 - 5, [Identifier("deviceId", "l")])])
    yield Persons(step, client, graph, j.id, w.person, lo.person)
    client.close()


def test_the_guards_step_sends_a_merged_persons_intents_to_the_person_and_replays_earlier_decisions(
    persons: Persons,
) -> None:
    p = persons
    winner, loser = p.winner, p.loser
    first = p.step([p.send(loser, 1, T0)])
    assert [(r.profile_id, r.status, r.replay) for r in first] == [(loser, "sent", False)]
    p.link()
    # in one batch, out of order: the loser's send before the merge counts under it and is
    # folded in; one after goes to the person; the first send again is a replay under the loser
    got = p.step([p.send(loser, 3, T0 + 9), p.merge(T0 + 5), p.send(loser, 2, T0 + 1), p.send(loser, 1, T0)])
    # (the journey allows one push a day)
    assert [(r.action_id, r.profile_id, r.status, r.replay) for r in got] == [
        ("a1", loser, "sent", True),
        ("a2", loser, "capped", False),
        ("a3", winner, "capped", False),  # the loser's push of the day counts for the person
    ]
    sent = {m.decode() for m in p.client.zrange(cap_key(winner, "journey", "push", p.journey), 0, -1)}
    assert sent == {"a1"}
    # once merged, the loser's intents go to the person, but one decided under the loser
    # before is replayed as it was decided
    again = p.step([p.send(loser, 1, T0), p.send(loser, 4, T0 + 20)])
    assert [(r.action_id, r.profile_id, r.status, r.replay) for r in again] == [
        ("a1", loser, "sent", True),
        ("a4", winner, "capped", False),
    ]


def test_a_send_decided_for_the_person_is_replayed_when_a_replay_batches_it_before_the_merge(
    persons: Persons,
) -> None:
    p = persons
    p.link()
    send, merge = p.send(p.loser, 2, T0 + 1), p.merge(T0 + 5)
    assert p.step([merge]) == []
    (first,) = p.step([send])  # a later batch: the loser's send goes to the person
    assert (first.profile_id, first.status, first.replay) == (p.winner, "sent", False)
    (again,) = p.step([send, merge])  # replayed, both in one batch: the send keeps the loser's id
    assert (again.profile_id, again.status, again.replay) == (p.winner, "sent", True)
