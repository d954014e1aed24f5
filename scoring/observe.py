"""The scoring side of one profile: when to observe, when to score, thresholds, opportunities.

Runs inside the profile step (``flows.dataflow.stages``), so it sees the profile's full feature
state without a second copy. Pure: events, feature values and the served models go in;
`Score`s, learner items and ``score_crossed`` events come out.

* **Profile models** (churn): a profile is observed at its events and while it is silent,
  at most once per ``observe_every`` of event time; the observation goes to the learner
  (silent observations teach the model what a long silence means). Each qualifying event
  after an open observation is reported as `Activity` (what resolves a label to 0), with
  the gap since the previous active day (what the automatic horizon is learned from).
  The profile is scored at every observation and otherwise at most every ``score_every``
  of event time. A silent profile is rescored at the event times its schedule declares,
  every ``max(score_every, score_backoff x (silence + 1 day))``, at least every
  ``score_every_max`` (`rescore_every`): its risk rises with time, at a cost that shrinks as the silence
  grows; the end of a bounded input rescores every scored profile as of the end. A silent
  rescoring is written (a `Score`: the ``scores`` row, Redis, the value journeys read) only
  once the score moved by ``score_step`` from the last one written; its observation and
  threshold check happen either way.
* **Fallback**: before a model has learned ``min_learned`` examples a profile model
  serves the recency fallback ``s / (s + H)`` (``s`` days since the last qualifying
  activity, ``H`` the label horizon in days), with version 0; it fires no threshold and
  journeys' score conditions do not read it.
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
from scoring.registry import ModelRegistry, Served
from scoring.scorer import Explanation
from scoring.vectors import Opportunity, opportunity_vector, profile_vector

MAX_OPEN_OPPORTUNITIES = 20
DAY_MS = 86_400_000
FALLBACK_VERSION = 0  # the version of a fallback score (no model served yet)
STAGE_TYPES = frozenset({"opportunity_created", "opportunity_stage_changed"})
Out = Score | Observation | Activity | Outcome | Event
# A score already made: the version, p, and its explanation (None: not written, since
# time alone moved it less than the model's `score_step`).
Scored = tuple[Served, float, Explanation | None]


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

    __slots__ = ("above", "last_act", "last_obs", "last_score", "open_since", "opps", "values")

    def __init__(self) -> None:
        self.last_obs: dict[str, int] = {}  # model -> ts of the last observation
        self.last_score: dict[str, int] = {}  # model -> as_of of the last score
        self.open_since: dict[str, int] = {}  # model -> oldest observation maybe still open
        self.above: dict[str, frozenset[str]] = {}  # model[:entity] -> thresholds now above
        self.opps: dict[str, Opportunity] = {}
        self.values: dict[str, float] = {}  # model -> latest written profile score (journeys read it)
        # model -> ts of the last qualifying activity (the first event until there is one)
        self.last_act: dict[str, int] = {}

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self.last_obs, self.last_score, self.open_since, self.above, self.opps, self.values, self.last_act
        )  # fmt: skip

    def __setstate__(self, st: tuple[Any, ...]) -> None:
        self.last_obs, self.last_score, self.open_since, self.above, self.opps, self.values = st[:6]
        self.last_act = st[6] if len(st) > 6 else {}  # snapshots before it was kept

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

    def next_rescore(self, plan: ScoringPlan) -> int:
        """Event time a silent profile is next rescored at (-1: never scored)."""
        due = -1
        for m in plan.profile_models:
            last = self.last_score.get(m.name)
            if last is not None:
                t = last + rescore_every(m, last - self.last_act.get(m.name, last))
                if due < 0 or t < due:
                    due = t
        return due

    def on_refresh(
        self,
        plan: ScoringPlan,
        profile_id: str,
        as_of_ms: int,
        values: Callable[[], Mapping[str, float]],
        force: bool = False,
        delays: list[tuple[str, int]] | None = None,
    ) -> list[Out]:
        """A silent profile's timer: rescore the profile models that are due as of stream
        time (observing them too once ``observe_every`` has passed); with `force` (the end
        of a bounded input), every scored model not yet scored as of `as_of_ms`.

        `delays`, when given, gets each due rescoring's model and how much stream time
        passed between its due time and `as_of_ms` (how late the timer came)."""
        out: list[Out] = []
        for m in self._due(plan, as_of_ms, force, delays):
            x = profile_vector(m, values(), as_of_ms, plan.first_seen)
            self._rescore(plan, m, profile_id, x, as_of_ms, force, None, out)
        return out

    def on_silence(
        self,
        plan: ScoringPlan,
        profile_id: str,
        as_of_ms: int,
        values: Callable[[], Mapping[str, float]],
        delays: list[tuple[str, int]],
    ) -> list[Out] | None:
        """`on_refresh` for the silent book (`flows.dataflow.wakes.SilentBook`), which
        rescores outside the profile's own wake: None, and nothing changed, when a due
        model's score would cross a threshold, since the journeys of the profile must see
        that crossing (its wake rescores it then). A score that moved less than the
        model's ``score_step`` from the last one written is not written (no `Score`)."""
        due = self._due(plan, as_of_ms, False, delays)
        if not due:
            return []
        xs: list[dict[str, float]] = []
        scored: list[Scored | None] = []
        for m in due:
            x = profile_vector(m, values(), as_of_ms, plan.first_seen)
            served = plan.registry.serving(m.name)
            ps: Scored | None = None
            if served is not None:
                p = served.scorer.probability(x)
                if m.thresholds and self._crosses(m, m.name, p):
                    del delays[len(delays) - len(due) :]
                    return None
                shown = self.values.get(m.name)
                if shown is not None and abs(p - shown) < m.score_step:
                    ps = (served, p, None)
                else:
                    ps = (served, *served.scorer.score(x))
            xs.append(x)
            scored.append(ps)
        out: list[Out] = []
        for m, x, ps in zip(due, xs, scored, strict=True):
            self._rescore(plan, m, profile_id, x, as_of_ms, False, ps, out)
        return out

    def _due(
        self, plan: ScoringPlan, as_of_ms: int, force: bool, delays: list[tuple[str, int]] | None
    ) -> list[ModelDef]:
        """The profile models a refresh as of `as_of_ms` rescores (see `on_refresh`)."""
        due: list[ModelDef] = []
        for m in plan.profile_models:
            name = m.name
            last = self.last_score.get(name)
            if last is None or as_of_ms <= last:
                continue
            if not force:
                late = as_of_ms - last - rescore_every(m, last - self.last_act.get(name, last))
                if late < 0:
                    continue
                if delays is not None:
                    delays.append((name, late))
            due.append(m)
        return due

    def _rescore(
        self,
        plan: ScoringPlan,
        m: ModelDef,
        profile_id: str,
        x: dict[str, float],
        as_of_ms: int,
        force: bool,
        scored: Scored | None,
        out: list[Out],
    ) -> None:
        """One silent rescoring: an observation once ``observe_every`` has passed (not at
        the end of an input), then the score (`scored`: already computed)."""
        name = m.name
        last_obs = self.last_obs.get(name)
        if not force and (last_obs is None or as_of_ms - last_obs >= m.observe_every_ms):
            out.append(Observation(name, profile_id, profile_id, as_of_ms, x))
            self.last_obs[name] = as_of_ms
            self.open_since.setdefault(name, as_of_ms)
        self._score(plan, m, profile_id, profile_id, name, x, as_of_ms, 0, out, scored)

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
        prev = self.last_act.get(name)
        active = sorted({e.ts_ms for e in events if not acts or e.type in acts})
        gaps: list[int] = []
        if active:
            for t in active:  # silences of a day or more between activities (not within a visit)
                if prev is not None and t - prev >= DAY_MS:
                    gaps.append(t - prev)
                prev = t if prev is None else max(prev, t)
            self.last_act[name] = prev  # type: ignore[assignment]
        elif prev is None:
            self.last_act[name] = min(e.ts_ms for e in events)  # silence counts from the first event
        times = tuple(t for t in active if since is not None and t > since)
        if times or gaps:
            out.append(Activity(name, pid, times, tuple(gaps)))
            if since is not None and times and times[-1] > self.last_obs.get(name, since):
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
        scored: Scored | None = None,
    ) -> None:
        served = plan.registry.serving(m.name) if scored is None else scored[0]
        if m.entity == "profile":
            self.last_score[m.name] = as_of
        if served is None:
            if m.entity == "profile":
                self._fallback(plan, m, pid, as_of, received_ms, out)
            return
        if scored is None:
            p, why = served.scorer.score(x)
        elif scored[2] is None:
            return  # a silent rescoring that moved the score less than a step: not written
        else:
            p, why = scored[1], scored[2]
        if m.entity == "profile":
            self.values[m.name] = p
        out.append(Score(m.name, entity, pid, p, served.version, as_of, why, received_ms))
        if m.thresholds and scored is None:  # (`on_silence` scored it: no threshold crossed)
            extra = {"version": served.version, "explanation": dict(why)}
            self._cross(m, entity, pid, slot, p, as_of, received_ms, out, extra)

    def _fallback(
        self, plan: ScoringPlan, m: ModelDef, pid: str, as_of: int, received_ms: int, out: list[Out]
    ) -> None:
        """Before ``min_learned``: the recency fallback (version 0), no threshold."""
        last = self.last_act.get(m.name)
        if last is None:
            return
        s = max(0.0, (as_of - last) / DAY_MS)
        h = horizon_days(plan, m)
        out.append(Score(m.name, pid, pid, s / (s + h), FALLBACK_VERSION, as_of,
                         (("days_since_last_activity", round(s, 6)),), received_ms))  # fmt: skip

    def _crosses(self, m: ModelDef, slot: str, p: float) -> bool:
        """Whether score `p` would cross one of `m`'s thresholds (what `_cross` emits for)."""
        before = self.above.get(slot, frozenset())
        return any(p >= t.above if t.name not in before else p < t.reset_below for t in m.thresholds)

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


def rescore_every(m: ModelDef, silent_ms: int) -> int:
    """How long after its last score a profile silent for `silent_ms` is rescored:
    ``score_backoff × (silence + 1 day)``, so one day plus the silence grows geometrically
    between rescorings (by ``1 + score_backoff``) and the inputs read as
    ``log1p(days since …)`` move by the same step each time; at least ``score_every``
    apart, at most ``score_every_max``.

    >>> from scoring.modeldefs import LabelDef
    >>> m = ModelDef("c", "profile", (), ("x",), (), frozenset(), (), LabelDef("inactivity"))
    >>> [rescore_every(m, d * 86_400_000) / 3_600_000 for d in (0, 1, 8, 100)]
    [6.0, 12.0, 54.0, 168.0]
    """
    longest = max(m.score_every_max_ms, m.score_every_ms)
    return min(max(m.score_every_ms, int((silent_ms + DAY_MS) * m.score_backoff)), longest)


def horizon_days(plan: ScoringPlan, m: ModelDef) -> float:
    """The label horizon in days: the one the served version was learned with (an automatic
    horizon moves), else the declared one, else 30 days."""
    pm = plan.registry.latest(m.name)
    h = getattr(pm, "horizon_ms", 0) if pm is not None else 0
    return (h or m.label.horizon_ms or 30 * DAY_MS) / DAY_MS


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
