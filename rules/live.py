"""The journeys the engine runs now, as the runtime and the guard step read them.

`LiveJourney` is one journey's current version and state. `LiveJourneys` is what a
caller hands the runtime: the current journeys by id, the same grouped by what wakes
them (`TriggerIndex`), and any version by number (a profile stays on the version it
entered with). `rules.store.JourneyCatalog` is the one
the engine uses, refreshed from Redis; tests pass small stand-ins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from rules.journeys.model import (
    AbsenceTrigger,
    BranchNode,
    DateTrigger,
    EventTrigger,
    InactivityTrigger,
    Journey,
    ScoreTrigger,
    SegmentTrigger,
    TagTrigger,
    quiet_types,
    walk,
)


@dataclass(frozen=True)
class LiveJourney:
    """A journey as the engine runs it: current version (its definition) and state
    (``enabled``, ``paused`` or ``disabled``, as in `rules.store.STATES`)."""

    journey: Journey
    state: str


Entry = tuple[str, LiveJourney]


@dataclass(frozen=True)
class TriggerIndex:
    """The current journeys grouped by what wakes them, each group in `current`'s order,
    so a profile's event or timer looks only at the journeys it can concern.

    >>> from rules.journeys.parse import parse_journey
    >>> j = parse_journey({"id": "hi", "name": "Hi", "priority": 1, "entry": {"policy": "once"},
    ...                    "trigger": {"event": {"type": "signup"}},
    ...                    "nodes": [{"id": "bye", "type": "exit"}]})
    >>> index = TriggerIndex.of({"hi": LiveJourney(j, "enabled")})
    >>> [jid for jid, _ in index.by_event["signup"]], index.absence
    (['hi'], ())
    """

    by_event: Mapping[str, tuple[Entry, ...]]  # event type -> journeys an event of it may enter
    absence: tuple[tuple[str, LiveJourney, AbsenceTrigger], ...]
    inactivity: tuple[tuple[str, LiveJourney, InactivityTrigger], ...]
    date: tuple[tuple[str, LiveJourney, DateTrigger], ...]
    # event types whose latest time quiet conditions read, over every current journey
    quiet_types: frozenset[str] = frozenset()

    @classmethod
    def of(cls, current: Mapping[str, LiveJourney]) -> TriggerIndex:
        by_event: dict[str, list[Entry]] = {}
        absence, inactivity, date = [], [], []
        for jid, lj in current.items():
            trig = lj.journey.trigger
            if isinstance(trig, AbsenceTrigger):
                absence.append((jid, lj, trig))
            elif isinstance(trig, InactivityTrigger):
                inactivity.append((jid, lj, trig))
            elif isinstance(trig, DateTrigger):
                date.append((jid, lj, trig))
            else:
                by_event.setdefault(_wakes(trig), []).append((jid, lj))
        quiet: set[str] = set()
        for lj in current.values():
            j = lj.journey
            quiet |= quiet_types(j.entry_if)
            for _, node in walk(j):
                if isinstance(node, BranchNode):
                    quiet |= quiet_types(node.when)
        quiet.discard("")  # any event: the runtime keeps that time anyway
        return cls(
            {k: tuple(v) for k, v in by_event.items()}, tuple(absence), tuple(inactivity), tuple(date),
            frozenset(quiet),
        )  # fmt: skip


def _wakes(trig: object) -> str:
    """The event type that may fire an event-like trigger (the engine's own for scores,
    segments and tags)."""
    if isinstance(trig, EventTrigger):
        return trig.type
    if isinstance(trig, ScoreTrigger):
        return "score_crossed"
    if isinstance(trig, SegmentTrigger):
        return "segment_changed"
    if isinstance(trig, TagTrigger):
        return "tag_added" if trig.change == "added" else "tag_removed"
    raise TypeError(f"unknown trigger {trig!r}")


class LiveJourneys(Protocol):
    """The live journeys: `current` by journey id, `triggers` (the same, grouped by what
    wakes them), `version` for any version, and the timezone of profiles without one."""

    @property
    def default_tz(self) -> str: ...

    @property
    def current(self) -> Mapping[str, LiveJourney]: ...

    @property
    def triggers(self) -> TriggerIndex: ...

    def version(self, journey_id: str, version: int) -> Journey: ...
