"""One retry policy for every I/O call: exponential backoff with jitter, a loud log line
per failed attempt, and a typed error when the attempts are spent. Never a silent drop.

An outage is ridden out, not just a blip: with ``give_up_after_s`` the call keeps trying
(every ``max_delay_s`` at most) until both the attempts are spent and that long has passed
since the first failure, so a Redis or ClickHouse that is down for 30 s stalls the flow
(the sinks' buffers then push back on the source) instead of failing the run.

>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("down")
...     return "ok"
>>> RetryPolicy(attempts=5, base_delay_s=0.001, max_delay_s=0.002).call(flaky, "demo")
'ok'
>>> len(calls)
3
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flows.core.errors import SinkError

T = TypeVar("T")
log = logging.getLogger("scrm.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 8
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    give_up_after_s: float = 0.0  # keep retrying at least this long after the first failure

    @classmethod
    def from_settings(cls, r: Any) -> RetryPolicy:
        """From the ``[retry]`` settings section."""
        return cls(r.attempts, r.base_delay_s, r.max_delay_s, r.give_up_after_s)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Backoff before retry number `attempt` (1-based): base * 2^(n-1), capped, +-25 % jitter."""
        raw = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(attempt - 1, 40))
        jitter = (rng or random).uniform(0.75, 1.25)
        return min(self.max_delay_s, raw * jitter)

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """Run `fn`, retrying on `retry_on`; raise SinkError naming `what` when spent."""
        first_failure: float | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except retry_on as exc:
                now = clock()
                if first_failure is None:
                    first_failure = now
                down = now - first_failure
                if attempt >= self.attempts and down >= self.give_up_after_s:
                    log.error("%s failed after %d attempts over %.1fs: %s", what, attempt, down, exc)
                    spent = f"{attempt} attempts over {down:.1f}s"
                    raise SinkError(f"{what} failed after {spent}: {exc}") from exc
                pause = self.delay(attempt)
                log.warning(
                    "%s failed (attempt %d, failing for %.1fs; giving up after %d attempts and %.0fs): %s; "
                    "retrying in %.2fs",
                    what,
                    attempt,
                    down,
                    self.attempts,
                    self.give_up_after_s,
                    exc,
                    pause,
                )
                sleep(pause)
