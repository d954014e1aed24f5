"""One retry policy for every I/O call: exponential backoff with jitter, a loud log line
per failed attempt, and a typed error when the attempts are spent. Never a silent drop.

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
from typing import TypeVar

from flows.errors import SinkError

T = TypeVar("T")
log = logging.getLogger("scrm.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 8
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Backoff before retry number `attempt` (1-based): base * 2^(n-1), capped, +-25 % jitter."""
        raw = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        jitter = (rng or random).uniform(0.75, 1.25)
        return min(self.max_delay_s, raw * jitter)

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Run `fn`, retrying on `retry_on`; raise SinkError naming `what` when spent."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except retry_on as exc:
                if attempt == self.attempts:
                    log.error("%s failed after %d attempts: %s", what, attempt, exc)
                    raise SinkError(f"{what} failed after {attempt} attempts: {exc}") from exc
                pause = self.delay(attempt)
                log.warning(
                    "%s failed (attempt %d/%d): %s; retrying in %.2fs",
                    what,
                    attempt,
                    self.attempts,
                    exc,
                    pause,
                )
                sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover
