"""Retry policy: backoff grows and is capped; giving up is a typed, loud error."""

from __future__ import annotations

import logging
import random

import pytest

from flows.errors import SinkError
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
    assert "insert into t failed after 3 attempts: connection refused" in str(info.value)
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
