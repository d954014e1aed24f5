"""`scrm models list|export|import` against a real Valkey: a trained model moves between
deployments; a model of another declaration is refused with the reason."""

from __future__ import annotations

import random
from dataclasses import replace

import redis
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.messages import Observation, Outcome
from flows.core.resources import config_dir
from flows.features.declarations import load_features
from scoring.learner import Learner
from scoring.modeldefs import ModelSettings, load_models
from scoring.registry import model_key, read_version, write_version
from scoring.scorer import predict

runner = CliRunner()


def _flat(text: str) -> str:
    """Without whitespace: rich wraps long lines at the terminal width."""
    return "".join(text.split())


MODELS = load_models(config_dir() / "models.toml", load_features(config_dir() / "features.toml"))


def _trained_win() -> Learner:
    learner = Learner(MODELS.by_name("win"), ModelSettings())
    rng = random.Random(3)
    for i in range(300):
        acts = rng.randrange(10)
        x = {"opp_activities": float(acts), "opp_amount_log": 4.0}
        learner.handle(
            [Observation("win", f"o{i}", "p", i, x), Outcome("win", f"o{i}", i + 1, int(acts > 4))]
        )
    return learner


def test_export_then_import_moves_the_trained_model(valkey, tmp_path) -> None:
    # two "deployments": two Redis databases of the session's Valkey
    src_url, dst_url = valkey.rsplit("/", 1)[0] + "/3", valkey.rsplit("/", 1)[0] + "/4"
    src, dst = redis.Redis.from_url(src_url), redis.Redis.from_url(dst_url)
    src.flushdb()
    dst.flushdb()
    learner = _trained_win()
    write_version(src, learner.publish(1.0))

    listed = runner.invoke(app, ["models", "list"], env={"SCRM_REDIS__URL": src_url})
    assert listed.exit_code == 0, listed.output
    assert "win" in listed.output and "300" in listed.output and "yes" in listed.output

    path = tmp_path / "win.model"
    exported = runner.invoke(app, ["models", "export", "win", str(path)], env={"SCRM_REDIS__URL": src_url})
    assert exported.exit_code == 0, exported.output
    assert "exported win version 1 (300 examples learned)" in exported.output

    dst.hset(model_key("win"), mapping={"version": 7})  # the target already served version 7
    imported = runner.invoke(app, ["models", "import", "win", str(path)], env={"SCRM_REDIS__URL": dst_url})
    assert imported.exit_code == 0, imported.output
    assert "imported win as version 8" in imported.output
    got = read_version(dst, "win")
    assert got is not None and got.version == 8 and got.n_learned == 300
    x = {"opp_activities": 7.0, "opp_amount_log": 4.0}
    assert predict(got.model, x) == predict(learner.model, x) > 0.5  # the very same model

    # a file for another declaration is refused, naming why; nothing is written
    other = Learner(replace(MODELS.by_name("win"), features=("revenue_90d",)), ModelSettings())
    write_version(src, other.publish(2.0))
    bad = tmp_path / "other.model"
    assert (
        runner.invoke(app, ["models", "export", "win", str(bad)], env={"SCRM_REDIS__URL": src_url}).exit_code
        == 0
    )
    refused = runner.invoke(app, ["models", "import", "win", str(bad)], env={"SCRM_REDIS__URL": dst_url})
    assert refused.exit_code == 1
    assert _flat("trained for other inputs or another pipeline") in _flat(refused.output)
    assert int(dst.hget(model_key("win"), "version")) == 8
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"hello")
    refused = runner.invoke(app, ["models", "import", "win", str(junk)], env={"SCRM_REDIS__URL": dst_url})
    assert refused.exit_code == 1 and _flat("not a scrm-stream model export") in _flat(refused.output)


def test_export_without_a_published_model_says_so(valkey, tmp_path) -> None:
    url = valkey.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).flushdb()
    res = runner.invoke(app, ["models", "export", "churn", str(tmp_path / "x")], env={"SCRM_REDIS__URL": url})
    assert res.exit_code == 1 and _flat("no published version of model 'churn'") in _flat(res.output)
