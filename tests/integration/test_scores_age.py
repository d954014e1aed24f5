"""Churn scores age in event time, through the real engines (broker, Valkey, chDB): a silent
customer is rescored as stream time passes, live and in a full-speed replay, and the end
of a bounded replay leaves every profile's latest score as of the end, in Redis and in
ClickHouse. No model has learned enough here, so the scores are the recency fallback
(version 0), which rises with the silence like any churn score should."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import orjson
import redis
from rich.console import Console

from flows.app import engine
from flows.core import metrics
from flows.dataflow.build import feature_set, model_set
from flows.sources.control import RunControl
from scoring.learner import Learner
from scoring.modeldefs import ModelSettings
from scoring.observe import rescore_every
from scoring.registry import write_version
from sinks.score_store import score_key
from tests.integration.test_faults import redis_url

MODELS = """
[[model]]
name = "churn"
entity = "profile"
features = ["days_since_last_order", "orders_30d"]
baseline = ["days_since_last_order"]
score_every = "SCORE_EVERY"
score_backoff = BACKOFF
min_learned = 1000000
[model.label]
kind = "inactivity"
horizon = "HORIZON"
activity_types = ["order_paid"]
"""


def _models(tmp_path: Path, score_every: str, horizon: str, backoff: float = 0.25) -> str:
    path = tmp_path / "models.toml"
    path.write_text(
        MODELS.replace("SCORE_EVERY", score_every)
        .replace("HORIZON", horizon)
        .replace("BACKOFF", str(backoff))
    )
    return str(path)


def _event(pid: str, n: int, ts: int, etype: str = "order_paid") -> bytes:
    return orjson.dumps({"eventId": f"{pid}-{n}", "profileId": pid, "type": etype, "ts": ts})


def _aging_metrics() -> tuple[float, float, float]:
    """This process's profile wakes, and the churn model's silent rescorings with the sum
    of their delays (Prometheus counters: tests compare before and after)."""
    churn = {"model": "churn"}
    return (
        metrics.value("scrm_profile_wakes_total"),
        metrics.value("scrm_rescore_delay_seconds_count", churn),
        metrics.value("scrm_rescore_delay_seconds_sum", churn),
    )


def test_live_a_silent_customers_risk_rises_with_the_wall_clock(
    broker, engine_settings, ch, names, valkey, tmp_path
) -> None:
    url = redis_url(valkey, 7)
    settings = engine_settings(
        {
            "source": {"kind": "kafka"},
            "kafka": {"stop_at_end": False},
            "redis": {"url": url},
            "models": {"file": _models(tmp_path, "1s", "10s", backoff=0)},  # every second
            "journeys": {"enabled": False},
        }
    )
    broker.create_topic(names["events"], partitions=1)
    pid = f"{names['tag']}-live"
    client = redis.Redis.from_url(url)
    control = RunControl()
    seen: list[tuple[int, float]] = []
    failed: list[BaseException] = []

    def script() -> None:
        try:
            broker.produce(names["events"], [(pid.encode(), _event(pid, 1, int(time.time() * 1000)))])
            deadline = time.monotonic() + 90
            while len(seen) < 4:
                assert time.monotonic() < deadline, f"rescored {len(seen)} times, not 4"
                got = client.hmget(score_key(pid), "churn", "churn:as_of", "churn:version")
                if got[0] is not None:
                    as_of, p = int(got[1]), float(got[0])  # type: ignore[arg-type]
                    assert int(got[2]) == 0  # type: ignore[arg-type]  # the fallback
                    if not seen or as_of > seen[-1][0]:
                        seen.append((as_of, p))
                time.sleep(0.1)
        except BaseException as exc:  # reported by the test
            failed.append(exc)
        finally:
            control.stop()

    t = threading.Thread(target=script, daemon=True)
    t.start()
    before = _aging_metrics()
    engine.run(settings, Console(file=io.StringIO()), control=control)
    t.join()
    assert not failed, failed[0]
    # the rescorings were counted, each as late as stream time (the wall clock, live) let it be
    _, n, late_s = (a - b for a, b in zip(_aging_metrics(), before, strict=True))
    assert n >= len(seen) - 1 and late_s / n < 5.0
    # no event after the first: each rescore is later in stream time, and riskier
    assert [p for _, p in seen] == sorted(p for _, p in seen) and seen[-1][1] > seen[0][1]
    rows = ch.query(
        f"SELECT count(), max(ts) > min(ts) FROM {names['database']}.scores FINAL "
        f"WHERE profile_id = '{pid}' AND model = 'churn'"
    ).result_rows
    assert rows[0][0] >= 3 and rows[0][1]


def test_replay_ends_with_every_profile_scored_as_of_the_end(
    broker, engine_settings, ch, names, valkey, tmp_path
) -> None:
    url = redis_url(valkey, 8)
    settings = engine_settings(
        {
            "source": {"kind": "kafka"},
            "redis": {"url": url},
            "models": {"file": _models(tmp_path, "1h", "30d")},
            "journeys": {"enabled": False},
        }
    )
    broker.create_topic(names["events"], partitions=2)
    tag = names["tag"]
    t0 = 1_700_000_000_000
    hour = 3_600_000
    # ten customers buy once in the first days; one keeps buying for 60 days
    msgs = [(f"{tag}-c{i}", _event(f"{tag}-c{i}", 0, t0 + i * 7 * hour)) for i in range(10)]
    msgs += [(f"{tag}-busy", _event(f"{tag}-busy", n, t0 + n * hour)) for n in range(1, 60 * 24)]
    broker.produce(names["events"], [(k.encode(), v) for k, v in msgs])
    wakes, rescored, late_s = _aging_metrics()
    engine.run(settings, Console(file=io.StringIO()))
    end = t0 + (60 * 24 - 1) * hour
    client = redis.Redis.from_url(url)
    for i in range(10):
        got = client.hmget(score_key(f"{tag}-c{i}"), "churn", "churn:as_of")
        assert got[1] is not None and int(got[1]) == end  # type: ignore[arg-type]
    db = names["database"]
    latest = ch.query(
        f"SELECT profile_id, toUnixTimestamp64Milli(max(ts)), argMax(score, ts), count() "
        f"FROM {db}.scores FINAL WHERE model = 'churn' GROUP BY profile_id ORDER BY profile_id"
    ).result_rows
    assert len(latest) == 11 and {r[1] for r in latest} == {end}
    quiet = [r for r in latest if r[0] != f"{tag}-busy"]
    busy = next(r for r in latest if r[0] == f"{tag}-busy")
    assert all(r[2] > busy[2] for r in quiet)  # 60 days silent: riskier than a buyer of the hour
    # rescored while silent, backing off: a few times, far fewer than its 60 silent days, at
    # exactly the times the schedule declares (as a live run would have), then at the end
    churn = next(iter(model_set(settings, feature_set(settings)).for_entity("profile")))
    for r in quiet:
        bought = t0 + int(r[0].rsplit("-c", 1)[1]) * 7 * hour
        due = [bought]
        while (nxt := due[-1] + rescore_every(churn, due[-1] - bought)) <= end:
            due.append(nxt)
        assert r[3] == len(due) + (due[-1] < end) < 40
    # every row of a quiet customer's besides its purchase's and the end's was a silent
    # rescoring, made by the silent book without waking the profile
    w, n, _ = (a - b for a, b in zip(_aging_metrics(), (wakes, rescored, late_s), strict=True))
    assert n >= sum(r[3] - 2 for r in quiet) and w < n
    rows = ch.query(f"SELECT count() FROM {db}.features FINAL WHERE profile_id = '{tag}-c0'").result_rows
    assert rows[0][0] <= 30  # snapshots while its windows moved, none for time alone


def test_winback_goes_to_the_silent_customer_not_to_the_one_who_keeps_buying(
    broker, engine_settings, ch, names, valkey, tmp_path
) -> None:
    """The shipped churn_winback with a served model that finds everyone risky (0.9): the
    risk crosses at each customer's first purchase, and only the customer who then stays
    silent for 30 days is won back, 30 days after that purchase."""
    url = redis_url(valkey, 6)
    models = Path(_models(tmp_path, "1h", "30d"))
    models.write_text(
        models.read_text() + '[[model.threshold]]\nname = "churn_risk_high"\nabove = 0.7\nreset_below = 0.6\n'
    )
    settings = engine_settings(
        {"source": {"kind": "kafka"}, "redis": {"url": url}, "models": {"file": str(models)}}
    )
    models_set = model_set(settings, feature_set(settings))
    assert models_set is not None
    mdef = models_set.by_name("churn")
    learner = Learner(mdef, ModelSettings())
    learner.model.steps["LogisticRegression"].intercept = 2.2  # type: ignore[union-attr]  # p = 0.9
    learner.n_learned = 2_000_000
    write_version(redis.Redis.from_url(url), learner.publish(time.time()))
    tag = names["tag"]
    day = 24 * 3_600_000
    t0 = 1_790_000_000_000
    loyal, lapsed, other = f"{tag}-loyal", f"{tag}-lapsed", f"{tag}-other"
    msgs = [(loyal, _event(loyal, n, t0 + n * 10 * day)) for n in range(9)]  # buys every 10 days
    msgs.append((lapsed, _event(lapsed, 0, t0)))  # buys once
    msgs += [(other, _event(other, n, t0 + n * day // 4, "page_view")) for n in range(1, 90 * 4)]
    broker.create_topic(names["events"], partitions=2)
    broker.produce(names["events"], [(k.encode(), v) for k, v in msgs])
    engine.run(settings, Console(file=io.StringIO()))
    rows = ch.query(
        f"SELECT profile_id, node_id, status, toUnixTimestamp64Milli(ts) FROM {names['database']}.actions "
        f"FINAL WHERE journey_id = 'churn_winback' ORDER BY profile_id, node_id"
    ).result_rows
    due = t0 + 30 * day
    assert rows == [(lapsed, "call_owner", "task", due), (lapsed, "winback_mail", "sent", due)]
    crossed = ch.query(
        f"SELECT profile_id, count() FROM {names['database']}.events FINAL WHERE type = 'score_crossed' "
        f"GROUP BY profile_id ORDER BY profile_id"
    ).result_rows
    assert dict(crossed).get(loyal, 0) >= 1  # the risk crossed at a purchase: not won back
