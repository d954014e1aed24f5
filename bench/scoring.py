"""Scoring benchmark: model quality on the synthetic customers, and what scoring costs.

Prints, from one run on this machine:

1. **quality** — simulated history (``--days`` of ``--profiles`` customers, ``--per-day``
   events a day) replayed at full speed through the dataflow in-process; the churn and win
   models' rolling progressive ROC AUC and log loss (every prediction made before its label
   existed), the recency-only churn baseline learned alongside, and how many labels
   resolved;
2. **cost, no I/O** — µs per scored event (input vector + served linear model + top-3
   explanation) and per learned example (River ``learn_one`` of model and baseline);
3. **throughput** — events/s through Kafka on one worker: ingest only, + features,
   + features and scoring (ClickHouse ``scores``, Redis ``scrm:score:*``, learners), on the
   same topic, and the added cost per event of scoring.

Not a test: nothing is asserted; bench/RESULTS.md keeps what it printed, dated.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base  # noqa: E402
from bytewax.testing import TestingSink, TestingSource, run_main  # noqa: E402

from flows.app.engine import make_sinks, prepare_clickhouse  # noqa: E402
from flows.app.testing import Broker, local_servers  # noqa: E402
from flows.core.contract import RawRecord  # noqa: E402
from flows.core.messages import ModelMetric  # noqa: E402
from flows.core.settings import Settings, load_settings  # noqa: E402
from flows.dataflow.build import FlowSinks, build_flow, feature_set, model_set  # noqa: E402
from flows.sources.control import RunControl  # noqa: E402
from flows.sources.kafka import KafkaEventsSource  # noqa: E402
from flows.synthetic.customers import SyntheticConfig, SyntheticCustomers  # noqa: E402
from scoring.learner import Learner  # noqa: E402
from scoring.modeldefs import ModelSettings, first_seen_feature  # noqa: E402
from scoring.scorer import make_scorer  # noqa: E402
from scoring.vectors import profile_vector  # noqa: E402
from sinks.kafka import ensure_topics  # noqa: E402

DAY = 86_400_000


def quality(profiles: int, days: float, per_day: int, seed: int) -> dict[str, ModelMetric]:
    gen = SyntheticCustomers(SyntheticConfig(profiles=profiles, seed=seed, late_share=0.0,
                                             malformed_share=0.0, duplicate_share=0.0))  # fmt: skip
    n = int(days * per_day)
    now = int(time.time() * 1000)
    start = now - n * DAY // per_day
    recs = [RawRecord(gen.next_event(start + i * DAY // per_day), "b", 0, i, None, now) for i in range(n)]
    rows: list[ModelMetric] = []
    flow = build_flow(load_settings(env={}), TestingSource(recs, batch_size=1000),
                      FlowSinks(model_metrics=[TestingSink(rows)]))  # fmt: skip
    t = time.perf_counter()
    run_main(flow)
    el = time.perf_counter() - t
    print(f"replayed {n:,} events ({days:g} days of {profiles:,} customers) in {el:.0f} s ({n / el:,.0f}/s)")
    return {r.model: r for r in rows}


def cost(s: Settings) -> tuple[float, float]:
    """(µs per scored churn event, µs per learned example), no I/O."""
    fs = feature_set(s)
    models = model_set(s, fs)
    assert models is not None
    m = models.by_name("churn")
    rng = random.Random(1)
    names = [*list(m.features), "first_seen"]
    rows = [{n: rng.random() * 10 for n in names} for _ in range(5000)]
    learner = Learner(m, ModelSettings())
    xs = [profile_vector(m, r, 1_800_000_000_000, "first_seen") for r in rows]
    t = time.perf_counter()
    for i, x in enumerate(xs):
        learner._learn([(x, int(i % 7 == 0))])
    learn_us = (time.perf_counter() - t) / len(xs) * 1e6
    scorer = make_scorer(learner.model, m.explain_top)
    fsn = first_seen_feature(fs)
    t = time.perf_counter()
    for _ in range(4):
        for r in rows:
            scorer.score(profile_vector(m, r, 1_800_000_000_000, fsn))
    score_us = (time.perf_counter() - t) / (4 * len(rows)) * 1e6
    return score_us, learn_us


def settings_for(
    broker: Broker, topic: str, chdb: Path, redis_url: str, features: bool, models: bool
) -> Settings:
    return load_settings(
        env={},
        overrides={
            "kafka": {"bootstrap": broker.bootstrap, "events_topic": topic, "stop_at_end": True,
                      "dlq_topic": f"{topic}_dlq"},
            "clickhouse": {"url": f"chdb://{chdb}", "database": f"bs_{uuid.uuid4().hex[:8]}"},
            "redis": {"url": redis_url},
            "metrics": {"port": 0},
            "source": {"kind": "kafka"},
            "features": {"enabled": features},
            "models": {"enabled": models},
        },
    )  # fmt: skip


def run_once(s: Settings) -> float:
    prepare_clickhouse(s)
    ensure_topics(s.kafka, {s.kafka.dlq_topic: 1})
    flow = build_flow(s, KafkaEventsSource(s.kafka, RunControl()), make_sinks(s))
    return base.timed(flow, s)


def history_workload(n: int, profiles: int, per_day: int, seed: int) -> list[bytes]:
    gen = SyntheticCustomers(SyntheticConfig(profiles=profiles, seed=seed))
    now = int(time.time() * 1000)
    start = now - n * DAY // per_day
    return [gen.next_event(start + i * DAY // per_day) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=3000)
    ap.add_argument("--days", type=float, default=100)
    ap.add_argument("--per-day", type=int, default=3000)
    ap.add_argument("--events", type=int, default=100_000, help="throughput workload")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    s0 = load_settings(env={})

    if not args.skip_quality:
        got = quality(args.profiles, args.days, args.per_day, args.seed)
        print(f"{'model':<6} {'labels':>8} {'pos rate':>9} {'ROC AUC':>8} {'log loss':>9} "
              f"{'baseline AUC':>13} {'baseline':>10}")  # fmt: skip
        base_names = {m.name: ",".join(m.baseline) for m in model_set(s0, feature_set(s0)).models}  # type: ignore[union-attr]
        for name, r in sorted(got.items()):
            print(f"{name:<6} {r.n_learned:>8,} {r.positive_rate:>9.3f} {r.roc_auc:>8.3f} {r.log_loss:>9.3f} "
                  f"{r.baseline_roc_auc:>13.3f} {base_names[name]:>10}")  # fmt: skip

    score_us, learn_us = cost(s0)
    print(f"\ncost, no I/O: {score_us:.1f} µs per scored event (vector + linear model + top-3 explanation), "
          f"{learn_us:.1f} µs per learned example (model + baseline)")  # fmt: skip

    raw = history_workload(args.events, 2000, 20_000, args.seed)
    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp, local_servers(Path(tmp)) as (broker, url):
        ch = Path(tmp) / "ch"
        warm = broker.create_topic(f"warm_{uuid.uuid4().hex[:6]}", partitions=2)
        broker.produce(warm, base.keyed_by_profile(raw[:5000]))
        run_once(settings_for(broker, warm, ch, url, True, True))
        topic = broker.create_topic(f"score_{uuid.uuid4().hex[:6]}", partitions=2)
        broker.produce(topic, base.keyed_by_profile(raw))
        rates = [
            (label, len(raw) / run_once(settings_for(broker, topic, ch, url, f, m)))
            for label, f, m in (
                ("ingest only", False, False),
                ("ingest + features", True, False),
                ("ingest + features + scoring (churn, win)", True, True),
            )
        ]
    print(f"\n{'stage (1 worker, through Kafka, ' + f'{len(raw):,} events)':<60} {'events/s':>10}")
    for label, r in rates:
        print(f"{label:<60} {r:>10,.0f}")
    print(f"added cost per event of scoring: {(1 / rates[2][1] - 1 / rates[1][1]) * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
