"""The scoring side of one profile: when to observe, when to score, thresholds, opportunities.

Runs inside the profile step (``flows.dataflow.stages``), so it sees the profile's full feature
state without a second copy. Pure: events, feature values and the served models go in;
`Score`s, learner items and ``score_crossed`` events come out.

* **Profile models** (churn): a profile is observed at its events, at most once per
  ``observe_every`` of event time; the observation goes to the learner. Each qualifying
  event after an open observation is reported as `Activity` (what resolves a label to 0).
  The profile is scored at every observation and otherwise at most every ``score_every``
  of event time, including when its wall-clock timer refreshes a silent profile (so a
  silent customer's risk rises as the windows empty).
* **Opportunity models** (win): every event carrying ``props.opportunityId`` updates that
  opportunity; the ``observe_on`` types observe and score it; a positive or negative
  closing type sends the `Outcome` and forgets it. At most `MAX_OPEN_OPPORTUNITIES` per
  profile are tracked (the least recently touched is dropped).
* **Thresholds** with hysteresis: a score rising to ``above`` or higher after having been
  below ``reset_below`` (or never scored) emits ``score_crossed`` with direction ``up``;
  falling below ``reset_below`` after that emits direction ``down``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flows.core.contract import Event, engine_event
from flows.core.messages import Activity, Observation, Outcome, Score
from scoring.modeldefs import ModelDef, ModelSet, first_seen_feature
from scoring.registry import ModelRegistry
from scoring.vectors import Opportunity, opportunity_vector, profile_vector

MAX_OPEN_OPPORTUNITIES = 20
STAGE_TYPES = frozenset({"opportunity_created", "opportunity_stage_changed"})
Out = Score | Observation | Activity | Outcome | Event


@dataclass(frozen=True)
class ScoringPlan:
    """The models split by entity, resolved once per flow."""

    profile_models: tuple[ModelDef, ...]
    opp_models: tuple[ModelDef, ...]
    first_seen: str | None
    registry: ModelRegistry

    @staticmethod
    def of(models: ModelSet, features: Any, registry: ModelRegistry) -> ScoringPlan:
        return ScoringPlan(
            models.for_entity("profile"), models.for_entity("opportunity"),
            first_seen_feature(features), registry,
        )  # fmt: skip


class ProfileScoring:
    """Per-profile scoring memory (a few small dicts; picklable)."""

    __slots__ = ("above", "last_obs", "last_score", "open_since", "opps", "values")

    def __init__(self) -> None:
        self.last_obs: dict[str, int] = {}  # model -> ts of the last observation
        self.last_score: dict[str, int] = {}  # model -> as_of of the last score
        self.open_since: dict[str, int] = {}  # model -> oldest observation maybe still open
        self.above: dict[str, frozenset[str]] = {}  # model[:entity] -> thresholds now above
        self.opps: dict[str, Opportunity] = {}
        self.values: dict[str, float] = {}  # model -> latest served profile score (journeys read it)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.last_obs, self.last_score, self.open_since, self.above, self.opps, self.values)

    def __setstate__(self, st: tuple[Any, ...]) -> None:
        self.last_obs, self.last_score, self.open_since, self.above, self.opps, self.values = st

    # -------------------------------------------------------------- events

    def on_events(
        self,
        plan: ScoringPlan,
        profile_id: str,
        events: list[Event],
        as_of_ms: int,
        values: Callable[[], Mapping[str, float]],
        received_ms: int,
    ) -> list[Out]:
        """Outputs for a batch of the profile's accepted events (late ones included)."""
        out: list[Out] = []
        for m in plan.profile_models:
            self._profile_model(plan, m, profile_id, events, as_of_ms, values, received_ms, out)
        if plan.opp_models:
            for e in events:
                oid = e.props.get("opportunityId") if e.props else None
                if isinstance(oid, str) and oid:
                    self._opportunity_event(plan, profile_id, oid, e, values, out)
        return out

    def on_refresh(
        self, plan: ScoringPlan, profile_id: str, as_of_ms: int, values: Callable[[], Mapping[str, float]]
    ) -> list[Out]:
        """A silent profile's timer: rescore profile models that are due."""
        out: list[Out] = []
        for m in plan.profile_models:
            last = self.last_score.get(m.name)
            if last is not None and as_of_ms - last >= m.score_every_ms:
                x = profile_vector(m, values(), as_of_ms, plan.first_seen)
                self._score(plan, m, profile_id, profile_id, m.name, x, as_of_ms, 0, out)
        return out

    def _profile_model(
        self,
        plan: ScoringPlan,
        m: ModelDef,
        pid: str,
        events: list[Event],
        as_of: int,
        values: Callable[[], Mapping[str, float]],
        received_ms: int,
        out: list[Out],
    ) -> None:
        name = m.name
        acts = m.label.activity_types
        since = self.open_since.get(name)
        if since is not None:
            times = tuple(
                sorted({e.ts_ms for e in events if e.ts_ms > since and (not acts or e.type in acts)})
            )
            if times:
                out.append(Activity(name, pid, times))
                if times[-1] > self.last_obs.get(name, since):
                    del self.open_since[name]  # every open observation is older: all resolved
        newest = max(e.ts_ms for e in events)
        last_obs = self.last_obs.get(name)
        observe = last_obs is None or newest - last_obs >= m.observe_every_ms
        last_score = self.last_score.get(name)
        due = observe or last_score is None or as_of - last_score >= m.score_every_ms
        if not due:
            return
        x = profile_vector(m, values(), as_of, plan.first_seen)
        if observe:
            out.append(Observation(name, pid, pid, newest, x))
            self.last_obs[name] = newest
            self.open_since.setdefault(name, newest)
        self._score(plan, m, pid, pid, name, x, as_of, received_ms, out)

    def _opportunity_event(
        self,
        plan: ScoringPlan,
        pid: str,
        oid: str,
        e: Event,
        values: Callable[[], Mapping[str, float]],
        out: list[Out],
    ) -> None:
        opp = self.opps.get(oid)
        closing = [m for m in plan.opp_models if e.type in m.label.positive or e.type in m.label.negative]
        if closing:
            for m in closing:
                out.append(Outcome(m.name, oid, e.ts_ms, 1 if e.type in m.label.positive else 0))
                self.above.pop(f"{m.name}:{oid}", None)
            self.opps.pop(oid, None)
            return
        if opp is None:
            opp = self.opps[oid] = Opportunity(e.ts_ms)
            if len(self.opps) > MAX_OPEN_OPPORTUNITIES:
                stale = min(self.opps, key=lambda k: self.opps[k].last_touch_ms)
                del self.opps[stale]
                for m in plan.opp_models:
                    self.above.pop(f"{m.name}:{stale}", None)
        opp.apply(e.type, e.ts_ms, e.props, STAGE_TYPES)
        for m in plan.opp_models:
            if e.type in m.observe_on:
                x = opportunity_vector(m, opp, values(), e.ts_ms, plan.first_seen)
                out.append(Observation(m.name, oid, pid, e.ts_ms, x))
                self._score(plan, m, oid, pid, f"{m.name}:{oid}", x, e.ts_ms, e.received_ms, out)

    # -------------------------------------------------------------- scores

    def _score(
        self,
        plan: ScoringPlan,
        m: ModelDef,
        entity: str,
        pid: str,
        slot: str,
        x: dict[str, float],
        as_of: int,
        received_ms: int,
        out: list[Out],
    ) -> None:
        served = plan.registry.serving(m.name)
        if m.entity == "profile":
            self.last_score[m.name] = as_of
        if served is None:
            return
        p, why = served.scorer.score(x)
        if m.entity == "profile":
            self.values[m.name] = p
        out.append(Score(m.name, entity, pid, p, served.version, as_of, why, received_ms))
        if m.thresholds:
            extra = {"version": served.version, "explanation": dict(why)}
            self._cross(m, entity, pid, slot, p, as_of, received_ms, out, extra)

    def _cross(
        self,
        m: ModelDef,
        entity: str,
        pid: str,
        slot: str,
        p: float,
        ts: int,
        received_ms: int,
        out: list[Out],
        extra: dict[str, Any] | None = None,
    ) -> None:
        before = self.above.get(slot, frozenset())
        now = set(before)
        for t in m.thresholds:
            if t.name not in before and p >= t.above:
                now.add(t.name)
                out.append(crossed_event(m.name, t.name, "up", entity, pid, p, ts, received_ms, extra))
            elif t.name in before and p < t.reset_below:
                now.discard(t.name)
                out.append(crossed_event(m.name, t.name, "down", entity, pid, p, ts, received_ms, extra))
        if now != before:
            if now:
                self.above[slot] = frozenset(now)
            else:
                self.above.pop(slot, None)


def crossed_event(
    model: str,
    threshold: str,
    direction: str,
    entity: str,
    pid: str,
    p: float,
    ts: int,
    received_ms: int,
    extra: dict[str, Any] | None = None,
) -> Event:
    """The ``score_crossed`` event journeys trigger on (deterministic id, origin "engine");
    `extra` carries the model version and the score's explanation, so the journey decision
    it leads to can record why."""
    return engine_event(
        f"score_crossed:{model}:{threshold}:{direction}:{entity}:{ts}",
        pid,
        "score_crossed",
        ts,
        {
            "model": model,
            "threshold": threshold,
            "direction": direction,
            "score": round(p, 6),
            "entityId": entity,
            **(extra or {}),
        },
        received_ms,
    )
