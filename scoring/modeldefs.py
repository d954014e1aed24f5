"""Model declarations: what `config/models.toml` may say, checked before the engine starts.

A model is one table in the ``[[model]]`` array::

    [[model]]
    name = "churn"                      # [a-z][a-z0-9_]*, unique
    entity = "profile"                  # profile | opportunity
    pipeline = [                        # River estimators by "module.Class", with params
      { step = "preprocessing.StandardScaler" },
      { step = "linear_model.LogisticRegression",
        params = { optimizer = { step = "optim.SGD", params = { lr = 0.01 } } } },
    ]
    features = ["sessions_7d", ...]     # names from the feature store (config/features.toml)
    extras = ["profile_age_days"]       # engine-computed, per entity (see EXTRAS)
    log1p = ["sessions_7d"]             # fed as log(1 + max(x, 0)): tames heavy-tailed counts
    baseline = ["days_since_last_seen"] # a same-pipeline model on these inputs only, scored
                                        # in the same run for comparison (optional)
    observe_every = "1d"                # profile: at most one learning example per this much event time
    score_every = "1h"                  # profile: rescored at most this often, silent or not
    score_backoff = 0.25                # profile, silent: rescored every max(score_every,
    score_every_max = "7d"              #   score_backoff x (silence + 1 day)), at least every score_every_max
    score_step = 0.01                   # profile, silent: a rescoring is written (scores row, Redis)
                                        #   once it moved the score by this much (0: every one)
    min_learned = 200                   # nothing is served before this many examples were learned
    explain_top = 3                     # contributions kept with every score
    [model.label]                       # how an observation gets its label
    kind = "inactivity"                 # profile: 1 = no activity within `horizon` after it
    horizon = "auto"                    # or a duration ("30d"); auto: horizon_multiple x the
    horizon_quantile = 0.9              #   horizon_quantile of the gaps (a day or more) between a
    horizon_multiple = 1.0              #   profile's activities, learned in the stream
    activity_types = []                 # [] = any customer event counts as activity
    # kind = "outcome"                  # opportunity: 1 = won, 0 = lost, at close
    # positive = ["opportunity_won"]; negative = ["opportunity_lost"]; max_open = "180d"
    [[model.threshold]]                 # score events with hysteresis (see scoring.thresholds)
    name = "churn_risk_high"; above = 0.7; reset_below = 0.6

A bad entry is refused at start with the file, the path inside it and what is wrong.
Pipelines are built here once, so an unknown class or a bad parameter fails before any
event is read.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from river import base, compose

from flows.core.durations import parse_duration
from flows.core.errors import ConfigError
from flows.features.declarations import FeatureSet, read_toml

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
ENTITIES = ("profile", "opportunity")
# Engine-computed inputs per entity, documented in scoring.vectors.
EXTRAS: dict[str, frozenset[str]] = {
    "profile": frozenset({"profile_age_days"}),
    "opportunity": frozenset(
        {
            "profile_age_days", "opp_amount_log", "opp_age_days", "opp_stage_days", "opp_stage_index",
            "opp_activities", "opp_days_since_touch", "opp_stage_changes",
        }
    ),
}  # fmt: skip
DEFAULT_PIPELINE: tuple[dict[str, Any], ...] = (
    {"step": "preprocessing.StandardScaler"},
    {"step": "linear_model.LogisticRegression"},
)


@dataclass(frozen=True)
class Threshold:
    """Fires ``score_crossed`` once the score goes above `above`; re-arms below `reset_below`."""

    name: str
    above: float
    reset_below: float


@dataclass(frozen=True)
class LabelDef:
    kind: str  # "inactivity" | "outcome"
    horizon_ms: int = 0  # inactivity: how long after an observation activity must show (0: auto)
    horizon_quantile: float = 0.9  # auto: which quantile of the gaps between activity days
    horizon_multiple: float = 1.0  # auto: times that quantile
    activity_types: frozenset[str] = frozenset()  # inactivity: [] = any customer event
    positive: frozenset[str] = frozenset()  # outcome: closing event types with label 1
    negative: frozenset[str] = frozenset()  # outcome: closing event types with label 0
    max_open_ms: int = 0  # outcome: observations of an entity still open this long are dropped


@dataclass(frozen=True)
class ModelDef:
    name: str
    entity: str
    pipeline: tuple[dict[str, Any], ...]
    features: tuple[str, ...]
    extras: tuple[str, ...]
    log1p: frozenset[str]
    baseline: tuple[str, ...]
    label: LabelDef
    observe_every_ms: int = 86_400_000
    score_every_ms: int = 3_600_000
    score_backoff: float = 0.25  # silent profiles: the rescoring interval grows with the silence
    score_every_max_ms: int = 7 * 86_400_000
    score_step: float = 0.01  # silent profiles: the smallest score move a rescoring is written for
    observe_on: frozenset[str] = frozenset()  # opportunity: event types that observe and score
    stages: tuple[str, ...] = ("lead", "qualified", "proposal", "negotiation")
    min_learned: int = 200
    explain_top: int = 3
    thresholds: tuple[Threshold, ...] = ()
    source: str = "<memory>"
    # (feature, fed as log1p?) in `features` order: what a vector is built from, per score
    feature_logs: tuple[tuple[str, bool], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_logs", tuple((f, f in self.log1p) for f in self.features))

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every input name the model sees, in a stable order."""
        return self.features + self.extras

    def fingerprint(self) -> str:
        """Changes when the inputs or the pipeline change: a saved model from another
        declaration is refused on import."""
        text = repr((self.entity, self.inputs, sorted(self.log1p), self.pipeline, self.baseline))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def build(self) -> base.Classifier:
        """A fresh River pipeline (already validated at load)."""
        return build_pipeline(self.pipeline, self.source, f"model ({self.name}).pipeline")


@dataclass(frozen=True)
class ModelSettings:
    """The ``[defaults]`` table: learner-wide settings."""

    publish_every_s: float = 2.0  # the learner publishes a new version at most this often
    metrics_every_s: float = 10.0  # a model_metrics row this often
    metrics_window: int = 5000  # rolling ROC AUC / log loss over this many resolved labels
    max_pending: int = 500_000  # observations awaiting labels, per model (oldest dropped beyond)


@dataclass(frozen=True)
class ModelSet:
    models: tuple[ModelDef, ...]
    settings: ModelSettings = field(default_factory=ModelSettings)
    source: str = "<memory>"

    def by_name(self, name: str) -> ModelDef:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def for_entity(self, entity: str) -> tuple[ModelDef, ...]:
        return tuple(m for m in self.models if m.entity == entity)


def build_step(spec: Any, source: str, where: str) -> Any:
    """``{"step": "module.Class", "params": {...}}`` -> a River object; params may nest steps."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("step"), str):
        raise ConfigError.at(
            source, where, 'must be a table like { step = "linear_model.LogisticRegression" }'
        )
    extra = set(spec) - {"step", "params"}
    if extra:
        raise ConfigError.at(source, where, f"unknown keys {sorted(extra)} (expected step, params)")
    path = spec["step"]
    module_name, _, cls_name = path.rpartition(".")
    if not module_name or not cls_name:
        raise ConfigError.at(
            source,
            f"{where}.step",
            f"{path!r} is not 'module.Class' (e.g. 'linear_model.LogisticRegression')",
        )
    try:
        module = importlib.import_module(f"river.{module_name}")
    except ImportError:
        raise ConfigError.at(source, f"{where}.step", f"river has no module {module_name!r}") from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise ConfigError.at(source, f"{where}.step", f"river.{module_name} has no class {cls_name!r}")
    params = spec.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError.at(source, f"{where}.params", "must be a table")
    kwargs = {
        k: build_step(v, source, f"{where}.params.{k}") if isinstance(v, Mapping) else v
        for k, v in params.items()
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError.at(source, f"{where}.params", f"river.{path} refused them: {exc}") from None


def build_pipeline(steps: tuple[dict[str, Any], ...], source: str, where: str) -> base.Classifier:
    """Chain the steps; the last one must be a classifier with ``predict_proba_one``."""
    built = [build_step(s, source, f"{where}[{i}]") for i, s in enumerate(steps)]
    for i, est in enumerate(built[:-1]):
        if not isinstance(est, base.Transformer):
            raise ConfigError.at(source, f"{where}[{i}].step", f"{type(est).__name__} is not a transformer")
    if not isinstance(built[-1], base.Classifier):
        raise ConfigError.at(
            source, f"{where}[{len(built) - 1}].step", f"{type(built[-1]).__name__} is not a classifier"
        )
    return built[0] if len(built) == 1 else cast(base.Classifier, compose.Pipeline(*built))


def _duration(raw: Mapping[str, Any], key: str, default: str, source: str, where: str) -> int:
    try:
        return parse_duration(raw.get(key, default))
    except ValueError as exc:
        raise ConfigError.at(source, f"{where}.{key}", str(exc)) from None


def _names(raw: Any, source: str, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise ConfigError.at(source, where, "must be a list of names")
    if len(set(raw)) != len(raw):
        raise ConfigError.at(source, where, "lists a name twice")
    return tuple(raw)


def _label(raw: Any, entity: str, source: str, where: str) -> LabelDef:
    if not isinstance(raw, Mapping):
        raise ConfigError.at(source, where, "missing [model.label] table")
    kind = raw.get("kind")
    want = "inactivity" if entity == "profile" else "outcome"
    if kind != want:
        raise ConfigError.at(
            source, f"{where}.kind", f"a {entity} model's label kind is {want!r}, not {kind!r}"
        )
    if kind == "inactivity":
        extra = set(raw) - {"kind", "horizon", "horizon_quantile", "horizon_multiple", "activity_types"}
        if extra:
            raise ConfigError.at(source, where, f"unknown keys {sorted(extra)}")
        auto = raw.get("horizon", "auto") == "auto"
        q, mult = raw.get("horizon_quantile", 0.9), raw.get("horizon_multiple", 1.0)
        for key, v, top in (("horizon_quantile", q, 1.0), ("horizon_multiple", mult, 100.0)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= top:
                raise ConfigError.at(source, f"{where}.{key}", f"{v!r} must be a number in (0, {top:g}]")
            if key in raw and not auto:
                raise ConfigError.at(source, f"{where}.{key}", 'only an automatic horizon ("auto") takes it')
        return LabelDef(
            kind,
            horizon_ms=0 if auto else _duration(raw, "horizon", "30d", source, where),
            activity_types=frozenset(
                _names(raw.get("activity_types", []), source, f"{where}.activity_types")
            ),
            horizon_quantile=float(q),
            horizon_multiple=float(mult),
        )
    extra = set(raw) - {"kind", "positive", "negative", "max_open"}
    if extra:
        raise ConfigError.at(source, where, f"unknown keys {sorted(extra)}")
    pos = frozenset(_names(raw.get("positive", []), source, f"{where}.positive"))
    neg = frozenset(_names(raw.get("negative", []), source, f"{where}.negative"))
    if not pos or not neg:
        raise ConfigError.at(source, where, "an outcome label needs positive and negative event types")
    if pos & neg:
        raise ConfigError.at(source, where, f"{sorted(pos & neg)} both positive and negative")
    return LabelDef(
        kind, positive=pos, negative=neg, max_open_ms=_duration(raw, "max_open", "180d", source, where)
    )


def _thresholds(raw: Any, source: str, where: str) -> tuple[Threshold, ...]:
    if not isinstance(raw, list):
        raise ConfigError.at(source, where, "must be an array of tables")
    out: list[Threshold] = []
    for j, t in enumerate(raw):
        at = f"{where}[{j}]"
        if not isinstance(t, Mapping) or set(t) - {"name", "above", "reset_below"}:
            raise ConfigError.at(source, at, "must be { name, above, reset_below }")
        name, above, reset = t.get("name"), t.get("above"), t.get("reset_below", t.get("above"))
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ConfigError.at(source, f"{at}.name", f"{name!r} must match [a-z][a-z0-9_]*")
        for key, v in (("above", above), ("reset_below", reset)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise ConfigError.at(source, f"{at}.{key}", f"{v!r} must be a probability in [0, 1]")
        if reset > above:
            raise ConfigError.at(source, f"{at}.reset_below", "must not exceed `above` (hysteresis)")
        out.append(Threshold(name, float(above), float(reset)))  # type: ignore[arg-type]
    return tuple(out)


_MODEL_KEYS = {
    "name", "entity", "pipeline", "features", "extras", "log1p", "baseline", "label", "observe_every",
    "score_every", "score_backoff", "score_every_max", "score_step", "observe_on", "stages", "min_learned",
    "explain_top", "threshold",
}  # fmt: skip


def parse_models(data: Mapping[str, Any], features: FeatureSet | None, source: str = "<memory>") -> ModelSet:
    """Validate ``{"model": [...]}`` against the feature set; errors name file, path and what."""
    unknown = set(data) - {"model", "defaults"}
    if unknown:
        raise ConfigError.at(
            source, "top level", f"unknown keys {sorted(unknown)} (expected [[model]], [defaults])"
        )
    d = data.get("defaults", {})
    allowed_defaults = {"publish_every_s", "metrics_every_s", "metrics_window", "max_pending"}
    if not isinstance(d, Mapping) or set(d) - allowed_defaults:
        raise ConfigError.at(source, "defaults", f"may hold only {sorted(allowed_defaults)}")
    try:
        settings = ModelSettings(**d)
    except TypeError as exc:
        raise ConfigError.at(source, "defaults", str(exc)) from None
    if settings.publish_every_s <= 0 or settings.metrics_every_s <= 0 or settings.metrics_window < 10:
        raise ConfigError.at(source, "defaults", "intervals must be positive and metrics_window at least 10")
    entries = data.get("model", [])
    if not isinstance(entries, list):
        raise ConfigError.at(source, "model", "must be an array of tables ([[model]])")
    known = set(features.names()) if features is not None else set()
    models: list[ModelDef] = []
    for i, raw in enumerate(entries):
        where = f"model[{i}]"
        if not isinstance(raw, Mapping):
            raise ConfigError.at(source, where, "must be a table")
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ConfigError.at(source, f"{where}.name", f"{name!r} must match [a-z][a-z0-9_]*")
        if any(m.name == name for m in models):
            raise ConfigError.at(source, f"{where}.name", "duplicate model name")
        where = f"model[{i}] ({name})"
        extra = set(raw) - _MODEL_KEYS
        if extra:
            raise ConfigError.at(source, where, f"unknown keys {sorted(extra)}")
        entity = raw.get("entity")
        if entity not in ENTITIES:
            raise ConfigError.at(source, f"{where}.entity", f"{entity!r} is not one of {', '.join(ENTITIES)}")
        feats = _names(raw.get("features", []), source, f"{where}.features")
        if feats and features is None:
            raise ConfigError.at(source, f"{where}.features", "features are off ([features] enabled = false)")
        for j, f in enumerate(feats):
            if f not in known:
                raise ConfigError.at(source, f"{where}.features[{j}]", f"{f!r} is not a declared feature")
        extras = _names(raw.get("extras", []), source, f"{where}.extras")
        for j, x in enumerate(extras):
            if x not in EXTRAS[entity]:
                raise ConfigError.at(
                    source, f"{where}.extras[{j}]",
                    f"{x!r} is not an engine input for {entity} models ({', '.join(sorted(EXTRAS[entity]))})",
                )  # fmt: skip
        if "profile_age_days" in extras and _first_seen(features) is None:
            raise ConfigError.at(
                source, f"{where}.extras", "profile_age_days needs a first_seen feature without filters"
            )
        inputs = feats + extras
        if not inputs:
            raise ConfigError.at(source, where, "declares no inputs (features or extras)")
        log1p = _names(raw.get("log1p", []), source, f"{where}.log1p")
        baseline = _names(raw.get("baseline", []), source, f"{where}.baseline")
        for key, names in (("log1p", log1p), ("baseline", baseline)):
            for j, n in enumerate(names):
                if n not in inputs:
                    raise ConfigError.at(
                        source, f"{where}.{key}[{j}]", f"{n!r} is not one of this model's inputs"
                    )
        steps = raw.get("pipeline", list(DEFAULT_PIPELINE))
        if not isinstance(steps, list) or not steps:
            raise ConfigError.at(source, f"{where}.pipeline", "must be a non-empty array of steps")
        pipeline = tuple(dict(s) if isinstance(s, Mapping) else s for s in steps)
        build_pipeline(pipeline, source, f"{where}.pipeline")  # validate now
        label = _label(raw.get("label"), entity, source, f"{where}.label")
        observe_on = frozenset(_names(raw.get("observe_on", []), source, f"{where}.observe_on"))
        if entity == "opportunity" and not observe_on:
            raise ConfigError.at(
                source, f"{where}.observe_on", "an opportunity model needs the event types it scores on"
            )
        stages = _names(
            raw.get("stages", ["lead", "qualified", "proposal", "negotiation"]), source, f"{where}.stages"
        )
        backoff = raw.get("score_backoff", 0.25)
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 0 <= backoff <= 10:
            raise ConfigError.at(source, f"{where}.score_backoff", "must be a number from 0 to 10")
        step = raw.get("score_step", 0.01)
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 <= step < 1:
            raise ConfigError.at(source, f"{where}.score_step", "must be a number from 0 to below 1")
        for key in ("min_learned", "explain_top"):
            v = raw.get(key, 200 if key == "min_learned" else 3)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError.at(source, f"{where}.{key}", "must be a non-negative integer")
        models.append(
            ModelDef(
                name=name, entity=entity, pipeline=pipeline, features=feats, extras=extras,
                log1p=frozenset(log1p), baseline=baseline, label=label,
                observe_every_ms=_duration(raw, "observe_every", "1d", source, where),
                score_every_ms=_duration(raw, "score_every", "1h", source, where),
                score_backoff=float(backoff),
                score_every_max_ms=_duration(raw, "score_every_max", "7d", source, where),
                score_step=float(step),
                observe_on=observe_on, stages=stages, min_learned=raw.get("min_learned", 200),
                explain_top=raw.get("explain_top", 3),
                thresholds=_thresholds(raw.get("threshold", []), source, f"{where}.threshold"), source=source,
            )
        )  # fmt: skip
    return ModelSet(tuple(models), settings, source)


def _first_seen(features: FeatureSet | None) -> str | None:
    """The feature holding the profile's first event time (epoch seconds), if declared."""
    if features is None:
        return None
    for f in features.features:
        if f.agg == "first_seen" and not f.types and not f.where:
            return f.name
    return None


def load_models(path: Path | str, features: FeatureSet | None) -> ModelSet:
    """Read and validate a models file; a bad one raises ConfigError naming file and path."""
    path = Path(path)
    return parse_models(read_toml(path, "models"), features, str(path))


first_seen_feature = _first_seen
