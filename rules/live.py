"""The journeys the engine runs now, as the runtime and the guard step read them.

`LiveJourney` is one journey's current version and state. `LiveJourneys` is what a
caller hands the runtime: the current journeys by id, and any version by number (a
profile stays on the version it entered with). `rules.store.JourneyCatalog` is the one
the engine uses, refreshed from Redis; tests pass small stand-ins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from rules.journeys.model import Journey


@dataclass(frozen=True)
class LiveJourney:
    """A journey as the engine runs it: current version (its definition) and state
    (``enabled``, ``paused`` or ``disabled``, as in `rules.store.STATES`)."""

    journey: Journey
    state: str


class LiveJourneys(Protocol):
    """The live journeys: `current` by journey id, and `version` for any version."""

    @property
    def current(self) -> Mapping[str, LiveJourney]: ...

    def version(self, journey_id: str, version: int) -> Journey: ...
