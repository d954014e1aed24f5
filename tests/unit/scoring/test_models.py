"""Model declarations, serving arithmetic, delayed labels and the learner: pure, no servers."""

from __future__ import annotations

import dataclasses
import pickle
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from river import checks

from flows.core.errors import ConfigError
from flows.core.messages import Activity, Observation, Outcome
from flows.core.resources import config_dir
from flows.features.declarations import load_features
from scoring.calibration import STATE_FIELDS, Calibrator
from scoring.labels import InactivityLabels, OutcomeLabels
from scoring.learner import Learner, PublishedModel
from scoring.modeldefs import ModelSettings, load_models, parse_models
from scoring.registry import ModelRegistry
from scoring.scorer import GenericScorer, LinearScorer, _top, make_scorer, predict

FEATURES = load_features(config_dir() / "features.toml")
MODELS = load_models(config_dir() / "models.toml", FEATURES)


def _model(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "churn",
        "entity": "profile",
        "features": ["orders_30d"],
        "label": {"kind": "inactivity", "horizon": "30d"},
    }
    base.update(over)
    return base


def _parse(*models: dict[str, object]) -> object:
    return parse_models({"model": list(models)}, FEATURES, "m.toml")


# ------------------------------------------------------------------ declarations


def test_shipped_models_load_and_build() -> None:
    assert [m.name for m in MODELS.models] == ["churn", "win"]
    churn = MODELS.by_name("churn")
    assert churn.label.horizon_ms == 0 and churn.label.horizon_quantile == 0.9  # automatic
    assert {"orders_life", "avg_order_value_life", "days_since_first_order"} <= set(churn.log1p)
    assert churn.thresholds[0].above == 0.7 and churn.thresholds[0].reset_below == 0.6
    assert "profile_age_days" in churn.inputs
    assert MODELS.by_name("win").label.positive == frozenset({"opportunity_won"})


@pytest.mark.parametrize(
    ("over", "where", "what"),
    [
        ({"features": ["nope"]}, "model[0] (churn).features[0]", "not a declared feature"),
        ({"entity": "account"}, "model[0] (churn).entity", "not one of"),
        ({"pipeline": [{"step": "linear_model.NoSuchModel"}]}, "pipeline[0].step", "no class 'NoSuchModel'"),
        ({"pipeline": [{"step": "nosuchmodule.X"}]}, "pipeline[0].step", "no module"),
        (
            {"pipeline": [{"step": "linear_model.LogisticRegression", "params": {"l9": 1}}]},
            "pipeline[0].params",
            "refused them",
        ),
        ({"pipeline": [{"step": "preprocessing.StandardScaler"}]}, "pipeline[0].step", "not a classifier"),
        (
            {"pipeline": [{"step": "linear_model.LinearRegression"}]},
            "pipeline[0].step",
            "not a classifier",
        ),
        ({"label": {"kind": "outcome"}}, "label.kind", "is 'inactivity'"),
        ({"label": {"kind": "inactivity", "horizon": "30 days"}}, "label.horizon", "does not parse"),
        (
            {"label": {"kind": "inactivity", "horizon": "30d", "horizon_quantile": 0.5}},
            "label.horizon_quantile",
            "only an automatic horizon",
        ),
        ({"label": {"kind": "inactivity", "horizon_quantile": 1.5}}, "label.horizon_quantile", "(0, 1]"),
        ({"score_backoff": -1}, "score_backoff", "from 0 to 10"),
        ({"extras": ["opp_amount_log"]}, "extras[0]", "not an engine input for profile"),
        ({"log1p": ["revenue_30d"]}, "log1p[0]", "not one of this model's inputs"),
        (
            {"threshold": [{"name": "hi", "above": 0.5, "reset_below": 0.7}]},
            "threshold[0].reset_below",
            "hysteresis",
        ),
        ({"threshold": [{"name": "hi", "above": 1.5}]}, "threshold[0].above", "probability"),
        ({"colour": "red"}, "model[0] (churn)", "unknown keys ['colour']"),
    ],
)
def test_bad_declarations_name_file_path_and_reason(over: dict[str, object], where: str, what: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _parse(_model(**over))
    msg = str(exc.value)
    assert msg.startswith("m.toml: ") and where in msg and what in msg, msg


def test_opportunity_model_needs_observe_on_and_outcome_types() -> None:
    opp = {"name": "win", "entity": "opportunity", "extras": ["opp_amount_log"],
           "label": {"kind": "outcome", "positive": ["won"], "negative": ["lost"]}}  # fmt: skip
    with pytest.raises(ConfigError, match="observe_on"):
        _parse(opp)
    with pytest.raises(ConfigError, match="needs positive and negative"):
        _parse({**opp, "observe_on": ["x"], "label": {"kind": "outcome", "positive": ["won"]}})


def test_nested_step_params_build_river_objects() -> None:
    adam = {"step": "optim.Adam", "params": {"lr": 0.01}}
    ms = _parse(_model(pipeline=[{"step": "linear_model.LogisticRegression", "params": {"optimizer": adam}}]))
    model = ms.models[0].build()  # type: ignore[attr-defined]
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.learning_rate == 0.01


def test_fingerprint_changes_with_inputs() -> None:
    a = _parse(_model()).models[0]  # type: ignore[attr-defined]
    b = _parse(_model(features=["orders_30d", "orders_7d"])).models[0]  # type: ignore[attr-defined]
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize("name", [m.name for m in MODELS.models])
def test_river_estimator_checks_pass_for_every_configured_pipeline(name: str) -> None:
    """River's own checks: pickling, cloning, learning from missing features, ..."""
    model = MODELS.by_name(name).build()
    checks.check_estimator(model)
    pickle.loads(pickle.dumps(model))
    assert model.clone() is not model


# ------------------------------------------------------------------ serving


def _trained(model: object, n: int = 400, seed: int = 3) -> object:
    rng = random.Random(seed)
    for _ in range(n):
        x = {"a": rng.gauss(2, 1), "b": rng.gauss(-1, 3), "c": rng.random()}
        y = x["a"] + 0.3 * x["b"] + rng.gauss(0, 1) > 1.5
        model.learn_one(x, y)  # type: ignore[attr-defined]
    return model


def test_linear_scorer_equals_river_and_explains_with_weight_times_scaled_value() -> None:
    model = _trained(MODELS.by_name("churn").build())
    sc = make_scorer(model, k=2)
    assert isinstance(sc, LinearScorer)
    rng = random.Random(9)
    for _ in range(50):
        x = {"a": rng.gauss(2, 1), "b": rng.gauss(-1, 3), "c": rng.random()}
        if rng.random() < 0.3:
            del x["c"]  # missing input
        p, why = sc.score(x)
        assert p == pytest.approx(predict(model, x), abs=1e-12)
        scaler, lr = model["StandardScaler"], model["LogisticRegression"]  # type: ignore[index]
        contrib = {n: lr.weights[n] * (v - scaler.means[n]) / scaler.vars[n] ** 0.5 for n, v in x.items()}
        best = sorted(contrib, key=lambda n: -abs(contrib[n]))[:2]
        assert [n for n, _ in why] == best
        assert dict(why)[best[0]] == pytest.approx(contrib[best[0]], abs=1e-6)


def test_other_classifiers_are_served_and_explained_by_occlusion() -> None:
    ms = _parse(_model(pipeline=[{"step": "naive_bayes.GaussianNB"}]))
    model = _trained(ms.models[0].build())  # type: ignore[attr-defined]
    sc = make_scorer(model, k=3)
    assert isinstance(sc, GenericScorer)
    x = {"a": 3.0, "b": 0.5, "c": 0.2}
    p, why = sc.score(x)
    assert p == pytest.approx(predict(model, x))
    assert len(why) == 3
    name, c = why[0]
    assert c == pytest.approx(p - predict(model, {k: v for k, v in x.items() if k != name}), abs=1e-6)


# ------------------------------------------------------------------ labels


def test_inactivity_labels_follow_the_definition() -> None:
    """Brute force against the definition on random histories."""
    rng = random.Random(5)
    h = 100
    for _ in range(200):
        q = InactivityLabels(horizon_ms=h, max_pending=10_000)
        obs = sorted(rng.sample(range(0, 400), 6))
        acts = sorted(rng.sample(range(0, 600), 4))
        got: dict[int, int] = {}
        # interleave in time: observations and activity in order, watermark = time
        timeline = sorted([(t, 0, t) for t in obs] + [(t, 1, t) for t in acts])
        for t, kind, v in timeline:
            for payload, y in q.advance(t):
                got[payload] = y
            if kind == 0:
                q.add("p", v, v)
            else:
                for payload, y in q.activity("p", (v,)):
                    got[payload] = y
        for payload, y in q.advance(10_000):
            got[payload] = y
        want = {t0: 0 if any(t0 < a <= t0 + h for a in acts) else 1 for t0 in obs}
        assert got == want
        assert q.size == 0


def test_inactivity_labels_are_bounded() -> None:
    q = InactivityLabels(horizon_ms=100, max_pending=3)
    for i in range(5):
        q.add(f"p{i}", i, i)
    assert q.size == 3 and q.dropped == 2
    assert sorted(p for p, _ in q.advance(10_000)) == [2, 3, 4]


def test_outcome_labels_close_all_observations_and_expire() -> None:
    q = OutcomeLabels(max_open_ms=1000, max_pending=100)
    for entity, t0, payload in (("o1", 0, "a"), ("o1", 10, "b"), ("o2", 0, "c")):
        q.add(entity, t0, payload)
    assert q.close("o1", 1) == [("a", 1), ("b", 1)]
    q.advance(2000)
    assert q.close("o2", 0) == [] and q.dropped == 1 and q.size == 0


# ------------------------------------------------------------------ learner


def test_learner_validates_progressively_and_publishes() -> None:
    mdef = MODELS.by_name("churn")
    learner = Learner(mdef, ModelSettings(metrics_window=100, publish_every_s=1.0))
    rng = random.Random(1)
    day = 86_400_000
    learned = 0
    for i in range(300):  # a day apart: each label resolves before much later observations
        age = rng.random() * 60
        active = age > 20  # old customers stay, young ones leave: learnable
        x = {"profile_age_days": age, "orders_30d": rng.random()}
        t0 = i * day
        items: list[object] = [Observation("churn", f"p{i}", f"p{i}", t0, x)]
        if active:
            items.append(Activity("churn", f"p{i}", (t0 + day // 2,)))
        learned += learner.handle(items)  # type: ignore[arg-type]
        learned += learner.advance(t0 + 1)  # label 1 for silent ones 30 days back
    learned += learner.advance(400 * day)
    assert learned == 300 == learner.n_learned
    row = learner.metrics_row(0.0)
    assert 0.0 < row.positive_rate < 1.0
    assert row.roc_auc > 0.8  # learned from out-of-sample predictions only
    pm = learner.maybe_publish(10.0)
    assert pm is not None and pm.version == 1 and learner.maybe_publish(10.5) is None
    again = PublishedModel.from_bytes(pm.to_bytes())
    assert again.n_learned == 300 and again.fingerprint == mdef.fingerprint()
    # a learner started from the published version continues it
    cont = Learner(mdef, ModelSettings(), again)
    assert cont.version == 1 and cont.n_learned == 300
    x = {"profile_age_days": 3.0}
    assert predict(cont.model, x) == predict(learner.model, x)
    # and survives pickling (Bytewax snapshots)
    clone = pickle.loads(pickle.dumps(learner))
    assert clone.n_learned == 300 and clone.labels.size == learner.labels.size


def test_learner_refuses_a_model_of_another_declaration() -> None:
    mdef = MODELS.by_name("churn")
    other = dataclasses.replace(mdef, features=("orders_30d",))
    pm = Learner(other, ModelSettings()).publish(1.0)
    fresh = Learner(mdef, ModelSettings(), pm)
    assert fresh.version == 0 and fresh.n_learned == 0


def test_outcome_learner_learns_at_close() -> None:
    learner = Learner(MODELS.by_name("win"), ModelSettings())
    x = {"opp_activities": 3.0}
    n = learner.handle([Observation("win", "o1", "p1", 1, x), Observation("win", "o1", "p1", 2, x),
                        Outcome("win", "o1", 3, 1)])  # fmt: skip
    assert n == 2 and learner.positives == 2


def test_inactivity_labels_keep_each_observations_own_horizon() -> None:
    q = InactivityLabels(horizon_ms=100, max_pending=100)
    q.add("p", 0, "short", 50)
    q.add("p", 10, "long", 500)
    q.add("p", 20, "default")
    assert q.activity("p", (80,)) == []  # 0s for "long" and "default"; 80 is past 0 + 50
    assert q.advance(51) == [("short", 1)]
    assert q.advance(121) == [("default", 0)] and q.advance(511) == [("long", 0)] and q.size == 0


def test_automatic_horizon_is_a_quantile_of_the_gaps_between_activity_days() -> None:
    mdef = MODELS.by_name("churn")
    learner = Learner(mdef, ModelSettings())
    day = 86_400_000
    assert learner.horizon_ms() == 30 * day  # before 50 gaps
    rng = random.Random(3)
    gaps = [int(rng.expovariate(1 / 20) * day) + day for _ in range(2000)]
    learner.handle([Activity("churn", f"p{i}", (), (g,)) for i, g in enumerate(gaps)])  # type: ignore[arg-type]
    want = sorted(gaps)[int(0.9 * len(gaps))]
    assert abs(learner.horizon_ms() - want) < 0.1 * want
    learner.handle([Observation("churn", "p", "p", 0, {"orders_30d": 1.0})])
    assert learner.labels.advance(want // 2) == []  # each observation waits its own horizon
    pm = learner.publish(1.0)
    assert pm.horizon_ms == learner.horizon_ms()  # scorers' fallback reads it
    assert Learner(mdef, ModelSettings(), pm).horizon_ms() == pm.horizon_ms  # resumed


def test_served_scores_are_calibrated_from_resolved_labels() -> None:
    """A model whose raw scores say 0.5 and 0.9 for groups that churn at 10 % and 40 %:
    once labels resolve, the published version serves about 0.1 and 0.4, same order."""
    mdef = MODELS.by_name("churn")
    learner = Learner(mdef, ModelSettings())
    learner.model = _Const()
    rng = random.Random(2)
    items: list[object] = []
    for i in range(4000):
        risky = i % 2 == 1
        items.append(Observation("churn", f"p{i}", f"p{i}", 0, {"x": 0.9 if risky else 0.5}))
        if rng.random() >= (0.4 if risky else 0.1):
            items.append(Activity("churn", f"p{i}", (1,)))
    learner.handle(items)  # type: ignore[arg-type]
    learner.advance(10**12)
    reg = ModelRegistry({"churn": mdef})
    reg.install(learner.publish(1.0))
    served = reg.serving("churn")
    assert served is not None
    low, high = served.scorer.score({"x": 0.5})[0], served.scorer.score({"x": 0.9})[0]
    assert abs(low - 0.1) < 0.03 and abs(high - 0.4) < 0.04 and low < high


class _Const:
    """A classifier whose probability is its input 'x' and that learns nothing."""

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        p = x.get("x", 0.5)
        return {True: p, False: 1 - p}

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        pass


_SIZES = st.sampled_from([0.0, 0.5, -0.5, 1.25, -2.0, 3.0])  # repeated sizes: ties


@given(st.dictionaries(st.sampled_from("abcdefgh"), _SIZES, max_size=8), st.integers(0, 4))
def test_top_contributions_are_the_largest_by_size_ties_by_name(contribs: dict[str, float], k: int) -> None:
    want = sorted(contribs.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:k]
    assert _top(contribs, k) == tuple((n, round(v, 6)) for n, v in want)


def test_calibrator_round_trips_and_restores_a_snapshot_from_before_it_was_compiled() -> None:
    c = Calibrator(min_labels=10)
    for i in range(60):
        c.update(0.2 if i % 3 else 0.8, i % 2)
    assert pickle.loads(pickle.dumps(c)).knots() == c.knots()
    old = Calibrator()  # the interpreted class pickled its slots by default: (None, {slot: value})
    old.__setstate__((None, {k: getattr(c, k) for k in STATE_FIELDS}))
    assert old.knots() == c.knots() and old.seen == 60
