"""Retry policy: backoff grows and is capped; giving up is a typed, loud error."""

from __future__ import annotations

import itertools
import logging
import random

import pytest

from flows.core.errors import SinkError
from sinks.retry import RetryPolicy


def test_backoff_grows_and_is_capped():
    p = RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(1)
    delays = [p.delay(n, rng) for n in range(1, 10)]
    assert delays[0] < delays[2] < delays[4]
    assert max(delays) <= 1.0
    assert all(d > 0 for d in delays)


def test_gives_up_with_sink_error_and_logs_each_attempt(caplog):
    sleeps: list[float] = []

    def down() -> None:
        raise ConnectionError("connection refused")

    with caplog.at_level(logging.WARNING, logger="scrm.retry"), pytest.raises(SinkError) as info:
        RetryPolicy(attempts=3, base_delay_s=0.5).call(down, "insert into t", sleep=sleeps.append)
    assert "insert into t failed after 3 attempts over 0.0s: connection refused" in str(info.value)
    assert len(sleeps) == 2
    assert sum("retrying in" in r.message for r in caplog.records) == 2


def test_does_not_retry_other_errors():
    calls = []

    def bug() -> None:
        calls.append(1)
        raise KeyError("programmer error")

    with pytest.raises(KeyError):
        RetryPolicy(attempts=5).call(bug, "x", retry_on=(ConnectionError,), sleep=lambda s: None)
    assert calls == [1]


def test_an_outage_is_waited_out_until_the_deadline(caplog):
    """With give_up_after_s, a 30 s outage is ridden out (retries every max_delay_s at
    most), and the error comes only when both the attempts and the time are spent."""
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    calls = []

    def down_for_30s() -> str:
        calls.append(now[0])
        if now[0] < 30:
            raise ConnectionError("connection refused")
        return "ok"

    policy = RetryPolicy(attempts=3, base_delay_s=0.2, max_delay_s=5.0, give_up_after_s=120)
    with caplog.at_level(logging.WARNING, logger="scrm.retry"):
        assert policy.call(down_for_30s, "guards", sleep=sleep, clock=lambda: now[0]) == "ok"
    assert len(calls) > 3 and 30 <= calls[-1] < 37
    assert all(b - a <= 5.0 + 1e-9 for a, b in itertools.pairwise(calls))
    assert "failing for" in caplog.records[-1].message

    now[0] = 0.0
    with pytest.raises(SinkError, match=r"guards failed after \d+ attempts over 12\d\.\ds"):
        policy.call(lambda: (_ for _ in ()).throw(ConnectionError("down")), "guards", sleep=sleep,
                    clock=lambda: now[0])  # fmt: skip
