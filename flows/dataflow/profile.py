"""Everything the engine keeps per profile, in one state object: one keyed step, one snapshot.

`ProfileState` = eventId dedupe (`flows.features.dedupe`) + windowed features
(`flows.features.windows`) + what was last written to the feature store + the scoring memory
(`scoring.observe`). It is pure: events and
an ``as_of`` time go in; accepted events (marked late or not) and `FeatureUpdate`s come
out. The Bytewax stage around it (`flows.dataflow.stages.profiles`) adds timers and metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.core.contract import Event, engine_event
from flows.core.messages import FeatureUpdate
from flows.features import rfm
from flows.features.dedupe import SeenIds
from flows.features.plan import NAN, FeaturePlan
from flows.features.rfm import RfmSketch
from flows.features.windows import ProfileFeatures
from rules.runtime import ProfileJourneys
from scoring.observe import ProfileScoring


class ProfileState:
    """Dedupe memory and feature state of one profile; picklable, bounded."""

    __slots__ = (
        "features",
        "journeys",
        "last_as_of",
        "last_snapshot_ms",
        "partition",
        "pending_segment",
        "pending_tag_events",
        "profile_id",
        "retag_all",
        "rfm",
        "scoring",
        "seen",
        "segment",
        "segment_gen",
        "sketch",
        "stored",
        "stored_names",
        "tag_inputs",
        "tags",
        "waiting",
    )  # fmt: skip

    def __init__(
        self,
        seen: SeenIds | None = None,
        features: ProfileFeatures | None = None,
        scoring: ProfileScoring | None = None,
        journeys: ProfileJourneys | None = None,
        *,
        sketch: RfmSketch | None = None,
    ) -> None:
        # Every argument has a default: compiled, unpickling calls __init__() bare.
        if sketch is not None:
            self.sketch = sketch  # the process's RFM quantiles (not pickled; `bind` sets it)
        self.profile_id = ""
        self.partition = 0  # the source partition its events come through: its stream time
        self.scoring = scoring
        self.journeys = journeys
        self.seen = seen if seen is not None else SeenIds()
        self.features = features
        self.stored = 0  # the features the online store holds a value for, as plan bits
        self.stored_names: Any = None  # restored and not bound yet: `stored` by name
        self.last_snapshot_ms = -1
        self.last_as_of = -1
        self.tags: frozenset[str] = frozenset()
        # The values of the features tags and RFM read (`FeaturePlan.tag_vector`): None
        # before the first update, a map by name when restored and not bound yet.
        self.tag_inputs: Any = None
        self.retag_all = False
        self.pending_tag_events: tuple[Any, Any] = ((), ())
        self.rfm: tuple[float, float, float] | None = None  # this profile's share of the sketch
        self.segment = ""
        self.segment_gen = -1  # the generation of the sketch's boundaries `segment` was computed with
        self.pending_segment: tuple[str, str] | None = None
        # Routing by person: a merge's notice whose hand-off has not arrived, then the
        # records held behind it (`flows.dataflow.profile_step`); None: not waiting.
        self.waiting: list[Event] | None = None

    def ingest(self, events: list[Event]) -> tuple[list[Event], int, int]:
        """Dedupe and fold in `events`; returns (events to store, duplicates, late)."""
        first = self.seen.first_time
        feats = self.features
        out: list[Event] = []
        dups = late = 0
        if events:
            self.partition = events[-1].partition
            if not self.profile_id:  # the key: the person when routing by person
                self.profile_id = events[0].person_id or events[0].profile_id
        for e in events:
            if not first(e.event_id, e.ts_ms):
                dups += 1
                continue
            if feats is not None and not feats.add(e):
                late += 1
                e = e._replace(late=True)
            out.append(e)
        return out, dups, late

    def update(
        self, profile_id: str, as_of_ms: int, snapshot_every_ms: int, received_ms: int,
        full_map: Callable[[], dict[str, float]] | None = None,
    ) -> FeatureUpdate | None:  # fmt: skip
        """What changed as of `as_of_ms` (None without features or without a change).

        `values` holds only the features that may have changed since the last update (see
        `ProfileFeatures.changed`); the first update and every snapshot, due each
        `snapshot_every_ms` of event time, also carry the full map: `full_map()` when
        given (the caller's cached ``values(as_of_ms)``, shared with scoring and
        journeys; never mutated), else computed here.
        """
        feats = self.features
        if feats is None:
            return None
        get_full = full_map or (lambda: feats.values(as_of_ms))
        first = self.last_as_of < 0
        full: dict[str, float] | None = None
        if first or as_of_ms - self.last_snapshot_ms >= snapshot_every_ms:
            full = get_full()
            self.last_snapshot_ms = as_of_ms
        plan = feats.plan
        stored = self.stored
        if first:
            feats.dirty = 0
            values, gone = dict(full or {}), list[str]()
            self.stored = plan.bits(values)
            looked = -1  # every feature: those not in the map have no value
            removed: tuple[str, ...] = ()
        else:
            values, gone, looked = feats.changed_bits(as_of_ms, self.last_as_of, full)
            if not values and not gone and full is None:
                return None
            if gone:
                gone_bits = plan.bits(gone)
                removed = tuple(sorted(n for n in gone if stored >> plan.index[n] & 1))
                self.stored = (stored | looked) & ~gone_bits
            else:
                removed = ()
                self.stored = stored | looked
        self.last_as_of = as_of_ms
        changed_tags = self._retag(values, looked)
        segment = self._resegment()
        if segment is not None:
            values = {**values, **segment[1]}
            if full is None:  # a segment change always gets a snapshot row
                full = get_full()
                self.last_snapshot_ms = as_of_ms
        if full is not None and feats.plan.rfm is not None:
            full = {**full, **self._scores()}
        tags = tuple(sorted(self.tags)) if changed_tags or full is not None else None
        seg = self.segment if (segment is not None or full is not None) and feats.plan.rfm else None
        return FeatureUpdate(profile_id, as_of_ms, values, removed, full, received_ms, tags, seg)

    def _scores(self) -> dict[str, float]:
        sc = self.sketch.scores(self.rfm)
        return {"rfm_r": float(sc["r"]), "rfm_f": float(sc["f"]), "rfm_m": float(sc["m"])}

    def _resegment(self) -> tuple[str, dict[str, float]] | None:
        """Move this profile's RFM values in the process sketch; the new segment if it changed."""
        plan = self.features.plan  # type: ignore[union-attr]
        cfg = plan.rfm
        if cfg is None:
            return None
        inputs = self.tag_inputs
        ri, fi, mi = plan.rfm_at
        r: float = inputs[ri]
        f: float = inputs[fi]
        m: float = inputs[mi]
        new = None if r != r else (r, 0.0 if f != f else f, 0.0 if m != m else m)
        sketch = self.sketch
        moved = new != self.rfm
        if moved:
            sketch.move(self.rfm, new)
            self.rfm = new
        gen, cuts = sketch.current()
        if not moved and self.segment_gen == gen:  # same values, same boundaries
            return None
        self.segment_gen = gen
        scores = sketch.scores(new, cuts)
        seg = rfm.segment_of(scores, plan.segments)
        if seg == self.segment:
            return None
        self.pending_segment = (self.segment, seg)
        self.segment = seg
        return seg, {"rfm_r": float(scores["r"]), "rfm_f": float(scores["f"]), "rfm_m": float(scores["m"])}

    def _retag(self, values: dict[str, float], looked: int) -> bool:
        """Move the tag inputs among the features `looked` at (each in `values`, or now
        without a value); re-read the tag rules if one moved. Whether the tags changed."""
        plan = self.features.plan  # type: ignore[union-attr]
        inputs = self.tag_inputs
        if inputs is None:
            inputs = self.tag_inputs = plan.tag_vector()
        moved = self.retag_all  # after a restore, the rules may have changed
        rest = looked & plan.tag_input_bits
        if rest:
            names, place = plan.names, plan.tag_input_of
            while rest:
                low = rest & -rest
                rest ^= low
                f = low.bit_length() - 1
                i = place[f]
                v = values.get(names[f])
                if v is None:
                    if inputs[i] == inputs[i]:
                        inputs[i] = NAN
                        moved = True
                elif inputs[i] != v:
                    inputs[i] = v
                    moved = True
        if not moved or not plan.tags:  # the rules read only these values: nothing can have changed
            return False
        self.retag_all = False
        now = plan.tags_holding(inputs)
        if now == self.tags:
            return False
        self.pending_tag_events = (now - self.tags, self.tags - now)
        self.tags = now
        return True

    def change_events(self, update: FeatureUpdate) -> list[Event]:
        """The segment_changed / tag_added / tag_removed events of the last `update`
        (deterministic ids)."""
        added, removed = self.pending_tag_events
        self.pending_tag_events = ((), ())
        out = []
        ts = update.as_of_ms
        if self.pending_segment is not None:
            before, after = self.pending_segment
            self.pending_segment = None
            out.append(
                engine_event(
                    f"segment_changed:{after}:{update.profile_id}:{ts}", update.profile_id,
                    "segment_changed", ts, {"segment": after, "from": before}, update.received_ms,
                )
            )  # fmt: skip
        for kind, names in (("tag_added", added), ("tag_removed", removed)):
            for name in sorted(names):
                out.append(
                    engine_event(
                        f"{kind}:{name}:{update.profile_id}:{ts}", update.profile_id, kind, ts,
                        {"tag": name}, update.received_ms,
                    )
                )  # fmt: skip
        return out

    def hand_off(self) -> ProfileState:
        """At a merge into another person: what this state hands to the winner, taken out
        of it. That is what its events alone determine (dedupe memory, features, the
        journeys' event memory), so a replay after a crash hands off the same. Its RFM
        values leave the process sketch; its scoring ends (the person is scored as the
        winner); its running journeys stay to run out under this id (`ProfileJourneys.hand_off`).
        A state waiting for a hand-off of its own hands off what it holds with it."""
        out = ProfileState(self.seen, self.features, None, None, sketch=self.sketch)
        out.profile_id, out.partition = self.profile_id, self.partition
        out.waiting, self.waiting = self.waiting, None  # what it held: its winner runs it next
        if self.journeys is not None:
            out.journeys = self.journeys.hand_off()
        self.seen = SeenIds(self.seen.ttl_ms, self.seen.cap)
        if self.features is not None:
            self.features = ProfileFeatures(self.features.plan, self.features.lateness_ms)
        self.tag_inputs = None
        self.tags = frozenset()
        self.sketch.move(self.rfm, None)
        self.rfm = None
        self.scoring = None
        return out

    def running(self) -> bool:
        """Whether anything is left to run here once handed off (journey steps or watches)."""
        js = self.journeys
        return js is not None and bool(js.instances or js.watches or js.pending)

    def absorb(self, other: ProfileState) -> None:
        """Take in what a person merged into this one handed off (`other`, bound to the
        same plan and sketch): the dedupe memories unite, features merge feature by feature
        (`ProfileFeatures.absorb`), the journeys' event memory joins. Tags, segment and
        scores follow at the next update, which re-reads every tag rule, reports every
        feature held and writes a snapshot row."""
        self.seen.absorb(other.seen)
        if other.features is not None:
            if self.features is None:
                self.features = other.features
            else:
                self.features.absorb(other.features)
        self.sketch.move(other.rfm, None)  # `other` counts no more in the RFM quantiles
        other.rfm = None
        if self.journeys is not None and other.journeys is not None:
            self.journeys.absorb(other.journeys)
        self.retag_all = True
        self.last_snapshot_ms = -(1 << 62)

    def as_of(self, stream_now_ms: int) -> int:
        """The time to read features at: stream time, or this profile's newest event if later."""
        own = self.features.max_ts if self.features is not None else -1
        return max(own, stream_now_ms)

    def live(self, as_of_ms: int) -> bool:
        """Whether time passing can still change this profile's windowed features."""
        return self.features is not None and self.features.live(as_of_ms)

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self.profile_id, self.seen, self.features, self._stored_names(), self.last_snapshot_ms,
            self.last_as_of, self.tags, self._tag_values(), self.rfm, self.segment, self.scoring,
            self.journeys, self.partition, self.waiting,
        )  # fmt: skip

    def _tag_values(self) -> dict[str, float]:
        """The tag and RFM inputs by name (a snapshot outlives the plan's positions)."""
        inputs = self.tag_inputs
        if inputs is None:
            return {}
        if isinstance(inputs, dict) or self.features is None:
            return inputs  # restored and not bound yet
        return self.features.plan.tag_values(inputs)

    def _stored_names(self) -> Any:
        """What `stored` means by name (a snapshot outlives the plan's positions)."""
        if self.stored_names is None and self.features is not None:
            return self.features.plan.names_of(self.stored)
        return self.stored_names  # restored and not bound yet: the names it was restored with

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self.profile_id, self.seen, self.features, self.stored_names, self.last_snapshot_ms,
            self.last_as_of, self.tags, self.tag_inputs, self.rfm, self.segment, self.scoring, self.journeys,
        ) = state[:12]  # fmt: skip
        self.stored = 0  # the bits of `stored_names` once bound to a plan
        self.partition = state[12] if len(state) > 12 else 0  # snapshots before it was kept: 0
        self.waiting = state[13] if len(state) > 13 else None
        self.pending_tag_events = ((), ())
        self.pending_segment = None  # `sketch` stays unset until `bind`
        self.segment_gen = -1
        self.retag_all = True

    def bind(self, plan: FeaturePlan | None, sketch: RfmSketch) -> None:
        """Attach a restored state to the running process: its feature plan, and the RFM
        sketch its values count in."""
        if self.features is not None and plan is not None:
            self.features.bind(plan)
            self.stored = plan.bits(self.stored_names or ())
            self.stored_names = None
            if isinstance(self.tag_inputs, dict):
                self.tag_inputs = plan.tag_vector(self.tag_inputs)
            self.tags = plan.tag_set(self.tags)
            self.retag_all = True  # the next update re-reads every tag rule
        self.sketch = sketch
        sketch.move(None, self.rfm)


def new_state(
    plan: FeaturePlan | None, ttl_ms: int, max_ids: int, lateness_ms: int, scoring: bool = False,
    journeys: bool = False, *, sketch: RfmSketch,
) -> ProfileState:  # fmt: skip
    return ProfileState(
        SeenIds(ttl_ms, max_ids),
        ProfileFeatures(plan, lateness_ms) if plan else None,
        ProfileScoring() if scoring else None,
        ProfileJourneys() if journeys else None,
        sketch=sketch,
    )
