"""Scoring end to end: simulated history through the real broker into the engine; scores in
chDB and Valkey, model versions in Valkey, and a second run that continues the model."""

from __future__ import annotations

import io
import time

import redis
from rich.console import Console

from flows.app import engine
from flows.app.produce import produce
from flows.core.resources import config_dir
from flows.synthetic.customers import SyntheticConfig, SyntheticCustomers
from scoring.registry import model_key, read_version
from sinks.score_store import score_key

DAY = 86_400_000


def history(gen: SyntheticCustomers, start_ms: int, days: float, per_day: int) -> list[bytes]:
    step = DAY / per_day
    return [gen.next_event(int(start_ms + i * step)) for i in range(int(days * per_day))]


def test_scores_land_and_the_model_survives_a_restart(engine_settings, ch, names, valkey, tmp_path) -> None:
    models = tmp_path / "models.toml"  # the shipped models, serving after fewer examples
    text = (config_dir() / "models.toml").read_text()
    models.write_text(
        text.replace("min_learned = 200", "min_learned = 20").replace("min_learned = 100", "min_learned = 20")
    )
    settings = engine_settings({"models": {"file": str(models)}, "source": {"kind": "kafka"}})
    tag = names["tag"]
    gen = SyntheticCustomers(SyntheticConfig(profiles=400, seed=11, late_share=0.0, malformed_share=0.0,
                                             duplicate_share=0.0))  # fmt: skip
    start = int(time.time() * 1000) - 60 * DAY
    # profile ids are shared by every test's generator: prefix them for this test's Valkey keys
    first = [
        r.replace(b'"profileId":"p', f'"profileId":"{tag}-p'.encode()) for r in history(gen, start, 40, 1200)
    ]
    assert produce(settings, first).delivered == len(first)
    engine.run(settings, Console(file=io.StringIO()))

    db = names["database"]
    rows = ch.query(
        f"SELECT model, countIf(model_version > 0), maxIf(length(mapKeys(explanation)), model_version > 0), "
        f"countIf(score < 0 OR score > 1), countIf(model_version = 0), "
        f"countIf(model_version = 0 AND mapKeys(explanation) != ['days_since_last_activity']) "
        f"FROM {db}.scores FINAL GROUP BY model ORDER BY model"
    ).result_rows
    by_model = {r[0]: r for r in rows}
    assert set(by_model) == {"churn", "win"}, rows
    for model, n, top, out_of_range, fallback, odd in rows:
        assert n > 100 and top == 3 and out_of_range == 0 and odd == 0, (model, n, top)
        # before min_learned, churn serves the recency fallback (version 0); win serves nothing
        assert (fallback > 0) == (model == "churn"), (model, fallback)
    r = redis.Redis.from_url(valkey)
    pm = read_version(r, "churn")
    assert pm is not None and pm.n_learned > 1000
    # Redis holds each profile's latest churn score: the same as ClickHouse's latest
    latest = ch.query(
        f"SELECT profile_id, argMax(score, ts), argMax(model_version, ts) FROM {db}.scores FINAL "
        f"WHERE model = 'churn' GROUP BY profile_id ORDER BY profile_id LIMIT 50"
    ).result_rows
    for pid, score, version in latest:
        h = r.hgetall(score_key(pid))
        assert abs(float(h[b"churn"]) - score) < 1e-6 and int(h[b"churn:version"]) == version, pid
    metrics1 = ch.query(
        f"SELECT model, max(n_learned) FROM {db}.model_metrics GROUP BY model ORDER BY model"
    ).result_rows
    learned1 = dict(metrics1)
    assert learned1["churn"] == pm.n_learned  # the last row is written at the end of the run
    assert learned1["win"] > 50

    # Second run on the next days (own topic), no recovery: the learners start from the
    # published versions.
    settings2 = engine_settings(
        {
            "models": {"file": str(models)},
            "kafka": {"events_topic": names["events"] + "-b"},
            "source": {"kind": "kafka"},
        }
    )
    more = history(gen, start + 40 * DAY, 5, 1200)
    more = [x.replace(b'"profileId":"p', f'"profileId":"{tag}-p'.encode()) for x in more]
    assert produce(settings2, more).delivered == len(more)
    engine.run(settings2, Console(file=io.StringIO()))
    pm2 = read_version(r, "churn")
    assert pm2 is not None and pm2.version > pm.version and pm2.n_learned > pm.n_learned
    first_row = ch.query(
        f"SELECT min(n_learned) FROM {db}.model_metrics "
        f"WHERE model = 'churn' AND model_version > {pm.version}"
    ).result_rows[0][0]
    assert first_row >= pm.n_learned  # continued, not restarted from zero
    assert int(r.hget(model_key("churn"), "version")) == pm2.version
