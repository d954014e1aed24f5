"""The pure parts of the guards: key names, action ids, reasons, the script call's keys,
and quiet-hours arithmetic across midnight, time zones and DST."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from flows.core.durations import DAY_MS
from rules.calendar import quiet_hours_decision
from rules.guards import _Call
from rules.policy import (
    ActionRequest,
    Cap,
    action_id,
    cap_key,
    consent_key,
    decision_key,
    dedupe_key,
    suppress_key,
)


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


# --- action ids and keys ----------------------------------------------------------------------


def test_action_id_is_deterministic_and_distinct() -> None:
    base = ("onboarding", 3, "n1", "p42", "evt-1")
    assert action_id(*base) == action_id(*base)
    assert len(action_id(*base)) == 32 and int(action_id(*base), 16) >= 0
    variants = [
        ("onboarding2", 3, "n1", "p42", "evt-1"),
        ("onboarding", 4, "n1", "p42", "evt-1"),
        ("onboarding", 3, "n2", "p42", "evt-1"),
        ("onboarding", 3, "n1", "p43", "evt-1"),
        ("onboarding", 3, "n1", "p42", "evt-2"),
        ("onboarding", 33, "n1", "p42", "evt-1"),  # no ambiguity between neighbouring fields
        ("onboarding", 3, "n1p", "42", "evt-1"),
    ]
    ids = {action_id(*v) for v in variants} | {action_id(*base)}
    assert len(ids) == len(variants) + 1


def test_every_key_carries_the_profile_hash_tag() -> None:
    keys = [
        decision_key("p42", "a1"),
        consent_key("p42"),
        suppress_key("p42"),
        dedupe_key("p42", "welcome"),
        cap_key("p42", "profile", "sms"),
        cap_key("p42", "profile", None),
        cap_key("p42", "journey", "email", "j{1}"),
    ]
    assert keys == [
        "scrm:decision:{p42}:a1",
        "scrm:consent:{p42}",
        "scrm:suppress:{p42}",
        "scrm:dedupe:{p42}:welcome",
        "scrm:cap:{p42}:profile:sms",
        "scrm:cap:{p42}:profile:*",
        "scrm:cap:{p42}:journey:email:j{1}",
    ]
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"p42")}


@pytest.mark.parametrize("bad", ["", "a{b", "a}b"])
def test_a_profile_id_that_breaks_the_hash_tag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="hash tag"):
        consent_key(bad)


def test_one_script_call_declares_every_key_it_touches_all_in_one_slot() -> None:
    caps = (
        Cap("profile", "sms", 1, 3_600_000),
        Cap("profile", "sms", 3, DAY_MS),
        Cap("journey", None, 2, DAY_MS),
    )
    reqs = [
        ActionRequest("a1", "p7", "j1", 1, "n", "sms", "t1", 50, 1000, caps, dedupe_window_ms=60_000),
        ActionRequest("a2", "p7", "j1", 1, "n", "email", "t2", 50, 2000, caps),
    ]
    call = _Call("p7", reqs)
    assert call.keys == [
        "scrm:consent:{p7}",
        "scrm:suppress:{p7}",
        "scrm:decision:{p7}:a1",
        "scrm:cap:{p7}:profile:sms",
        "scrm:cap:{p7}:journey:*:j1",
        "scrm:dedupe:{p7}:t1",
        "scrm:decision:{p7}:a2",
    ]
    [a1, a2] = json.loads(call.args[0])
    # both sms caps share one set: counted over their own window, trimmed and kept by the longest
    assert [(c["k"], c["cut"], c["trim"], c["keep"], c["l"]) for c in a1["caps"]] == [
        (4, str(1000 - 3_600_000), str(1000 - DAY_MS), str(DAY_MS), "profile:sms:1/1h"),
        (4, str(1000 - DAY_MS), str(1000 - DAY_MS), str(DAY_MS), "profile:sms:3/1d"),
        (5, str(1000 - DAY_MS), str(1000 - DAY_MS), str(DAY_MS), "journey:*:2/1d"),
    ]
    assert [c["l"] for c in a2["caps"]] == ["journey:*:2/1d"]  # the sms caps do not apply to email
    assert (a1["dk"], a1["dl"], a2["dk"]) == (6, "t1:1m", 0)


def test_requests_and_caps_are_validated() -> None:
    with pytest.raises(ValueError):
        Cap("tenant", None, 1, DAY_MS)
    with pytest.raises(ValueError):
        Cap("profile", "fax", 1, DAY_MS)
    with pytest.raises(ValueError):
        Cap("profile", None, 1, DAY_MS, reserve=2)
    with pytest.raises(ValueError):
        ActionRequest("a", "p", "j", 1, "n", "fax", "t", 50, 0)
    with pytest.raises(ValueError):
        ActionRequest("a", "p", "j", 1, "n", "sms", "t", 101, 0)
    with pytest.raises(ValueError):
        ActionRequest("a", "p{", "j", 1, "n", "sms", "t", 50, 0)
    r = ActionRequest("a", "p", "j", 1, "n", "sms", "t", 50, 0, caps=[Cap("profile", None, 1, 1)])  # type: ignore[arg-type]
    assert isinstance(r.caps, tuple)


# --- quiet hours ------------------------------------------------------------------------------

QUIET = (21 * 60, 8 * 60)  # 21:00-08:00, crossing midnight


def test_quiet_hours_across_midnight() -> None:
    assert quiet_hours_decision(utc_ms(2024, 6, 1, 20, 59), "UTC", *QUIET) == (False, None)
    end = utc_ms(2024, 6, 2, 8, 0)
    assert quiet_hours_decision(utc_ms(2024, 6, 1, 21, 0), "UTC", *QUIET) == (True, end)
    assert quiet_hours_decision(utc_ms(2024, 6, 1, 23, 59), "UTC", *QUIET) == (True, end)
    assert quiet_hours_decision(utc_ms(2024, 6, 2, 0, 0), "UTC", *QUIET) == (True, end)
    assert quiet_hours_decision(end - 1, "UTC", *QUIET) == (True, end)
    assert quiet_hours_decision(end, "UTC", *QUIET) == (False, None)


def test_quiet_hours_within_one_day_and_off() -> None:
    lunch = (12 * 60, 13 * 60 + 30)
    assert quiet_hours_decision(utc_ms(2024, 6, 1, 11, 59), "UTC", *lunch) == (False, None)
    assert quiet_hours_decision(utc_ms(2024, 6, 1, 12, 0), "UTC", *lunch) == (
        True,
        utc_ms(2024, 6, 1, 13, 30),
    )
    assert quiet_hours_decision(utc_ms(2024, 6, 1, 13, 30), "UTC", *lunch) == (False, None)
    assert quiet_hours_decision(utc_ms(2024, 6, 1, 3, 0), "UTC", 600, 600) == (
        False,
        None,
    )  # start == end: off
    with pytest.raises(ValueError):
        quiet_hours_decision(0, "UTC", 0, 1440)


def test_quiet_hours_are_local_the_same_instant_differs_by_time_zone() -> None:
    now = utc_ms(2024, 6, 1, 13, 30)  # Shanghai 21:30, Berlin 15:30 (CEST), New York 09:30 (EDT)
    assert quiet_hours_decision(now, "Asia/Shanghai", *QUIET) == (True, utc_ms(2024, 6, 2, 0, 0))
    assert quiet_hours_decision(now, "Europe/Berlin", *QUIET) == (False, None)
    assert quiet_hours_decision(now, "America/New_York", *QUIET) == (False, None)
    later = utc_ms(2024, 6, 2, 1, 0)  # Shanghai 09:00, Berlin 03:00, New York 21:00
    assert quiet_hours_decision(later, "Asia/Shanghai", *QUIET) == (False, None)
    assert quiet_hours_decision(later, "Europe/Berlin", *QUIET) == (True, utc_ms(2024, 6, 2, 6, 0))
    assert quiet_hours_decision(later, "America/New_York", *QUIET) == (True, utc_ms(2024, 6, 2, 12, 0))


def test_quiet_hours_on_dst_days() -> None:
    # Berlin springs forward on 2024-03-31 (02:00 CET -> 03:00 CEST at 01:00 UTC):
    # a night from 21:00 CET ends at 08:00 CEST = 06:00 UTC, a 10-hour night, not 11
    assert quiet_hours_decision(utc_ms(2024, 3, 30, 20, 0), "Europe/Berlin", *QUIET) == (
        True,
        utc_ms(2024, 3, 31, 6, 0),
    )
    # an end time the gap skips (02:30) ends the quiet hours when the clock jumps
    assert quiet_hours_decision(utc_ms(2024, 3, 31, 0, 30), "Europe/Berlin", 22 * 60, 150) == (
        True,
        utc_ms(2024, 3, 31, 1, 0),
    )
    # Berlin falls back on 2024-10-27 (03:00 CEST -> 02:00 CET at 01:00 UTC): 08:00 CET = 07:00 UTC
    assert quiet_hours_decision(utc_ms(2024, 10, 26, 20, 0), "Europe/Berlin", *QUIET) == (
        True,
        utc_ms(2024, 10, 27, 7, 0),
    )
    # an end time that occurs twice (02:30) ends the window the first time after now
    first, second = utc_ms(2024, 10, 27, 0, 30), utc_ms(2024, 10, 27, 1, 30)
    assert quiet_hours_decision(utc_ms(2024, 10, 27, 0, 15), "Europe/Berlin", 22 * 60, 150) == (True, first)
    assert quiet_hours_decision(utc_ms(2024, 10, 27, 1, 15), "Europe/Berlin", 22 * 60, 150) == (True, second)
    # New York springs forward on 2024-03-10 at 07:00 UTC: 08:00 EDT = 12:00 UTC
    assert quiet_hours_decision(utc_ms(2024, 3, 10, 5, 0), "America/New_York", *QUIET) == (
        True,
        utc_ms(2024, 3, 10, 12, 0),
    )


ZONES = [
    "UTC",
    "Asia/Shanghai",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
]


def _local_minute(ms: int, tz: str) -> int:
    t = datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))
    return t.hour * 60 + t.minute


def _quiet(minute: int, start: int, end: int) -> bool:
    return start <= minute < end if start < end else minute >= start or minute < end


@settings(max_examples=400, deadline=None)
@given(
    now=st.integers(utc_ms(2020, 1, 1), utc_ms(2030, 1, 1)),
    tz=st.sampled_from(ZONES),
    start=st.integers(0, 1439),
    end=st.integers(0, 1439),
)
def test_quiet_hours_end_is_the_first_instant_out_of_the_window(
    now: int, tz: str, start: int, end: int
) -> None:
    in_quiet, end_ms = quiet_hours_decision(now, tz, start, end)
    assert in_quiet == (start != end and _quiet(_local_minute(now, tz), start, end))
    if in_quiet:
        assert end_ms is not None and now < end_ms <= now + 2 * DAY_MS
        assert not _quiet(_local_minute(end_ms, tz), start, end)
        assert _quiet(_local_minute(end_ms - 1, tz), start, end)
    else:
        assert end_ms is None
