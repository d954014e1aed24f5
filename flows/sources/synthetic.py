"""The synthetic source: the generator's customers as a stream of `RawRecord`s, in simulated
event time (history first, then live).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.core import metrics
from flows.core.contract import RawRecord
from flows.core.settings import SyntheticSettings
from flows.core.streamtime import Clock, now_ms
from flows.sources.control import Pacer, RunControl
from flows.synthetic.customers import SyntheticConfig, SyntheticCustomers


def synthetic_config(settings: SyntheticSettings) -> SyntheticConfig:
    """The generator's configuration from the ``[source.synthetic]`` settings."""
    return SyntheticConfig(
        profiles=settings.profiles,
        seed=settings.seed,
        late_share=settings.late_share,
        max_lateness_ms=int(settings.max_lateness_s * 1000),
        malformed_share=settings.malformed_share,
        duplicate_share=settings.duplicate_share,
    )


class SimulatedTime:
    """Event time of the synthetic source: `history_days` in the past, advancing a fixed
    step per event until it catches up with the wall clock, then the wall clock itself.

    >>> t = SimulatedTime(start_ms=1_000, step_ms=10, wall=lambda: 2.0)
    >>> [t.next() for _ in range(3)], t.live
    ([1000, 1010, 1020], False)
    >>> t.sim_ms = 5_000; t.next(), t.live      # caught up with the wall clock (2 s)
    (2000, True)
    """

    __slots__ = ("live", "sim_ms", "step_ms", "wall")

    def __init__(self, start_ms: int, step_ms: float, wall: Clock = time.time) -> None:
        self.sim_ms = float(start_ms)
        self.step_ms = step_ms
        self.wall = wall
        self.live = False

    def next(self) -> int:
        if not self.live:
            t = self.sim_ms
            self.sim_ms += self.step_ms
            if t < self.wall() * 1000:
                return int(t)
            self.live = True
        return int(self.wall() * 1000)

    def __getstate__(self) -> tuple[float, float, bool]:
        return (self.sim_ms, self.step_ms, self.live)

    def __setstate__(self, st: tuple[float, float, bool]) -> None:
        self.sim_ms, self.step_ms, self.live = st
        self.wall = time.time


class SyntheticSource(FixedPartitionedSource[RawRecord, Any]):
    """The seeded synthetic customer generator as one input partition.

    Event time follows the wall clock (events are "now", late ones up to the configured
    lateness behind), paced to `rate` events/s. With ``history_days`` it first replays
    simulated history (see `SimulatedTime`): warm features and models, then go live.
    """

    def __init__(self, settings: SyntheticSettings, rate: float, control: RunControl) -> None:
        self._config = synthetic_config(settings)
        self._rate = rate
        self._control = control
        self._history_ms = int(settings.history_days * 86_400_000)
        self._step_ms = 86_400_000 / settings.events_per_day

    def list_parts(self) -> list[str]:
        return ["synthetic-0"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any | None) -> _SyntheticPartition:
        if resume_state is not None:
            gen, sim = resume_state
        else:
            gen = SyntheticCustomers(self._config)
            sim = SimulatedTime(now_ms() - self._history_ms, self._step_ms)
            sim.live = self._history_ms == 0
        return _SyntheticPartition(gen, sim, self._rate, self._control, f"synthetic:{self._config.seed}")


class _SyntheticPartition(StatefulSourcePartition[RawRecord, Any]):
    def __init__(
        self, gen: SyntheticCustomers, sim: SimulatedTime, rate: float, control: RunControl, origin: str
    ) -> None:
        self._gen = gen
        self._sim = sim
        self._pacer = Pacer(rate)
        self._control = control
        self._origin = origin
        self._counter = metrics.RECORDS_IN.labels(source="synthetic")
        control.start()

    def next_batch(self) -> list[RawRecord]:
        n = self._control.quota(self._pacer, 1000)
        if n == 0:
            return []
        t = now_ms()
        start = self._gen.generated
        gen, sim, origin = self._gen, self._sim, self._origin
        if sim.live:
            out = [RawRecord(gen.next_event(t), origin, 0, start + i, None, t) for i in range(n)]
        else:
            out = [RawRecord(gen.next_event(sim.next()), origin, 0, start + i, None, t) for i in range(n)]
        self._counter.inc(n)
        return out

    def next_awake(self) -> datetime | None:
        return self._pacer.next_awake()

    def snapshot(self) -> Any:
        import copy

        return (copy.deepcopy(self._gen), copy.deepcopy(self._sim))
