"""A scoring plan of the shipped models whose churn model is served by a stand-in scorer,
for tests of the per-profile logic (pure: no learner runs, no I/O)."""

from __future__ import annotations

from typing import Any

from flows.core.resources import config_dir
from flows.features.declarations import load_features
from scoring.learner import Learner
from scoring.modeldefs import ModelSet, ModelSettings, load_models
from scoring.observe import ScoringPlan
from scoring.registry import ModelRegistry


def served_plan(scorer: Any) -> tuple[ScoringPlan, ModelSet]:
    """The plan, with churn at a published version scored by `scorer`, and the models."""
    fs = load_features(config_dir() / "features.toml")
    models = load_models(config_dir() / "models.toml", fs)
    reg = ModelRegistry({m.name: m for m in models.models})
    learner = Learner(models.by_name("churn"), ModelSettings())
    learner.n_learned = 10_000
    reg.install(learner.publish(1.0))
    served = reg._served["churn"]
    reg._served["churn"] = served.__class__(
        served.version, served.uid, served.n_learned, scorer, served.published
    )
    return ScoringPlan(models.for_entity("profile"), (), "first_seen", reg), models
