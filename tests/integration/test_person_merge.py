"""Two persons' guard records folded into one on a real Valkey: the strictest wins, caps
count the sends of both, a later grant still lifts an unsubscribe, and folding again
changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from flows.core.durations import DAY_MS
from rules.guards import Guards, record_consent, set_consent, unsubscribe
from rules.person_merge import merge_records
from rules.policy import Cap, consent_key, suppress_at_key, suppress_key
from sinks.retry import RetryPolicy
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
    assert merge_records(c, mini, app, merged, FAST) > 0
    assert status(guards, app, "sms") == "suppressed"  # the unsubscribe holds despite the grant
    assert c.hget(suppress_at_key(app), "sms") == f"{merged}|unsubscribe".encode()
    assert c.hget(suppress_at_key(app), "push") == f"{merged}|complaint".encode()
    assert c.hget(consent_key(app), "wecom") == b"1"
    assert status(guards, app, "email") == "capped"  # two sends today already, under the mini-program
    assert merge_records(c, mini, app, merged, FAST) == 0  # folding again changes nothing

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
    merge_records(c, b, a, T0 + HOUR, FAST)
    got = {k.decode(): v.decode() for k, v in c.hgetall(consent_key(a)).items()}
    assert got["email"] == "0" and got["email:at"].startswith(f"{T0 + HOUR}|old|")
    assert got["sms"] == "0" and got["sms:at"].startswith(f"{T0 + 9}|a-sms")
