"""Scoring benchmark: model quality on the synthetic customers, and what scoring costs.

Prints, from one run on this machine:

0. **churn as of a cut-off** — on the synthetic customers and on the CDNOW purchase
   history (``bench/cdnow.py``; needs the ``bench`` extra, i.e. the ``lifetimes`` wheel):
   the history up to a cut-off replayed at full speed through the dataflow in-process; each
   customer's latest churn score (rescored as of the end of the replay) ranked against "no
   activity in the next H after the cut-off" (H = the horizon the model learned; on CDNOW,
   whose only activity is a purchase, also the nine months the data has left): ROC AUC of
   the model beside recency only (days since the last activity) and frequency + recency (a
   logistic regression on both, fitted at the cut-off minus H) and hindsight (a logistic
   regression on what the activity times and order amounts say — recency, frequency, age,
   mean gap, recent active days, orders, mean amount — fitted on the very labels it is
   scored on, cross-validated: roughly what a model of the purchase history can reach), the
   model's calibration per score decile, and what rescoring silent customers cost (µs per
   rescoring, no I/O; rescorings per customer per day of event time; their product per
   customer-day against one event's scoring, the bound aging must keep within);
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
import math
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base  # noqa: E402
import orjson  # noqa: E402
from bytewax.testing import TestingSink, TestingSource, run_main  # noqa: E402

from flows.app.engine import make_sinks, prepare_clickhouse  # noqa: E402
from flows.app.testing import Broker, local_servers  # noqa: E402
from flows.core import metrics  # noqa: E402
from flows.core.contract import Event, RawRecord  # noqa: E402
from flows.core.messages import ModelMetric, Score  # noqa: E402
from flows.core.settings import Settings, load_settings  # noqa: E402
from flows.dataflow.build import FlowSinks, build_flow, feature_set, model_set  # noqa: E402
from flows.dataflow.profile_step import model_inputs  # noqa: E402
from flows.features.plan import FeaturePlan  # noqa: E402
from flows.features.windows import ProfileFeatures  # noqa: E402
from flows.sources.control import RunControl  # noqa: E402
from flows.sources.kafka import KafkaEventsSource  # noqa: E402
from flows.synthetic.customers import SyntheticConfig, SyntheticCustomers  # noqa: E402
from scoring.calibration import deciles  # noqa: E402
from scoring.learner import Learner  # noqa: E402
from scoring.modeldefs import ModelSettings, first_seen_feature  # noqa: E402
from scoring.observe import ProfileScoring, ScoringPlan  # noqa: E402
from scoring.registry import ModelRegistry  # noqa: E402
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


# ------------------------------------------------------------------ churn as of a cut-off


def _auc(scores: list[float], labels: list[int]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _replay(raw: list[bytes], s: Settings) -> tuple[list[Score], ModelRegistry, float]:
    """The events replayed at full speed through the dataflow; the scores served and the
    process's models at the end."""
    fs = feature_set(s)
    models = model_set(s, fs)
    assert models is not None
    registry = ModelRegistry({m.name: m for m in models.models})
    now = int(time.time() * 1000)
    recs = [RawRecord(v, "b", 0, i, None, now) for i, v in enumerate(raw)]
    scores: list[Score] = []
    flow = build_flow(s, TestingSource(recs, batch_size=1000), FlowSinks(scores=[TestingSink(scores)]),
                      registry=registry)  # fmt: skip
    t = time.perf_counter()
    run_main(flow)
    return scores, registry, time.perf_counter() - t


def history_inputs(ts: list[int], at: int, amounts: list[float]) -> list[float]:
    """What a customer's activity times before `at` and order amounts say, log1p: recency,
    frequency (active days), age, the mean gap between active days, active days in the
    last 30 and 90, orders and their mean amount."""
    days = sorted({t // DAY for t in ts if t < at})
    now = at / DAY
    rec, age = now - max(t for t in ts if t < at) / DAY, now - days[0]
    gap = (days[-1] - days[0]) / (len(days) - 1) if len(days) > 1 else age
    last = [sum(1 for d in days if now - d <= w) for w in (30, 90)]
    mean = sum(amounts) / len(amounts) if amounts else 0.0
    return [math.log1p(v) for v in (rec, len(days), age, gap, *last, len(amounts), mean)]


def hindsight(xs: list[list[float]], ys: list[int]) -> float:
    """ROC AUC of a logistic regression fitted on the labels it is scored against (5-fold
    cross-validated): what the history's inputs allow when the answers are known."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return _auc(list(cross_val_predict(lr, xs, ys, cv=folds, method="predict_proba")[:, 1]), ys)


def cutoff_eval(name: str, raw: list[bytes], cutoff_ms: int, acts: frozenset[str], extra_h: int = 0) -> float:
    """Replay what happened before `cutoff_ms`; rank each customer's latest churn score
    against "no activity within H after the cut-off". Returns the silent rescorings per
    customer per day of event time."""
    s = load_settings(env={})
    parsed = [orjson.loads(v) for v in raw]
    before = [v for v, e in zip(raw, parsed, strict=True) if e["ts"] < cutoff_ms]
    times: dict[str, list[int]] = defaultdict(list)
    spent: dict[str, list[float]] = defaultdict(list)  # order amounts before the cut-off
    for e in parsed:
        if not acts or e["type"] in acts:
            times[e["profileId"]].append(e["ts"])
        if e["type"] == "order_paid" and e["ts"] < cutoff_ms:
            spent[e["profileId"]].append(float((e.get("props") or {}).get("amount") or 0.0))
    made, unwritten = _rescorings()
    scores, registry, el = _replay(before, s)
    made, unwritten = (b - a for a, b in zip((made, unwritten), _rescorings(), strict=True))
    pm = registry.latest("churn")
    assert pm is not None
    h_model = pm.horizon_ms
    latest: dict[str, Score] = {}
    for sc in scores:
        if sc.model == "churn" and sc.as_of_ms >= latest.get(sc.profile_id, sc).as_of_ms:
            latest[sc.profile_id] = sc
    first_ts = min(e["ts"] for e in parsed)
    days = (cutoff_ms - first_ts) / DAY
    customers = [p for p, ts in times.items() if min(ts) < cutoff_ms]
    print(f"\n{name}: {len(before):,} events before the cut-off ({days:.0f} days, "
          f"{len(customers):,} customers) replayed in {el:.0f} s; horizon learned {h_model / DAY:.0f} days; "
          f"model version {pm.version}, {pm.n_learned:,} labels learned")  # fmt: skip
    fallback = sum(1 for p in customers if p in latest and latest[p].version == 0)
    asof = {latest[p].as_of_ms for p in customers if p in latest}
    print(f"  scored at the end: {sum(1 for p in customers if p in latest):,} of {len(customers):,} "
          f"(fallback {fallback:,}); latest score as of {min(asof) / 1000:.0f}..{max(asof) / 1000:.0f} "
          "(epoch s)")  # fmt: skip
    per_day = made / len(customers) / days
    written = 1 - unwritten / max(1, made)
    print(f"  rescorings while silent: {per_day:.3f} per customer per day of event time, "
          f"{written:.0%} of them written (moved the score by `score_step`)")  # fmt: skip

    def recency_freq(at: int) -> dict[str, tuple[float, float]]:
        out = {}
        for p, ts in times.items():
            past = [t for t in ts if t < at]
            if past:
                out[p] = ((at - max(past)) / DAY, float(len({t // DAY for t in past})))
        return out

    def label(p: str, at: int, h: int) -> int:
        return int(not any(at <= t < at + h for t in times[p]))

    now_rf = recency_freq(cutoff_ms)
    hs = [("learned H", h_model)] + ([(f"{extra_h // DAY} days", extra_h)] if extra_h else [])
    hist = [history_inputs(times[p], cutoff_ms, spent.get(p, [])) for p in customers]
    print(f"  {'target':<34} {'pos rate':>8} {'model':>7} {'recency':>8} {'freq+rec':>9} {'hindsight':>10}")
    for label_name, h in hs:
        from sklearn.linear_model import LogisticRegression

        ys = [label(p, cutoff_ms, h) for p in customers]
        model = [latest[p].score if p in latest else 0.5 for p in customers]
        rec = [now_rf[p][0] for p in customers]
        # the baseline learns where the labels were known at the cut-off (for a horizon
        # longer than the history, the learned one's)
        past = cutoff_ms - (h if cutoff_ms - h > first_ts + 30 * DAY else h_model)
        then = recency_freq(past)
        train = [p for p in customers if p in then]
        lr = LogisticRegression().fit(
            [[math.log1p(then[p][0]), math.log1p(then[p][1])] for p in train],
            [int(not any(past <= t < cutoff_ms for t in times[p])) for p in train],
        )
        fr = lr.predict_proba([[math.log1p(now_rf[p][0]), math.log1p(now_rf[p][1])] for p in customers])[:, 1]
        print(f"  no activity in {label_name} ({h / DAY:.0f} d){'':<8} {sum(ys) / len(ys):>8.3f} "
              f"{_auc(model, ys):>7.3f} {_auc(rec, ys):>8.3f} {_auc(list(fr), ys):>9.3f} "
              f"{hindsight(hist, ys):>10.3f}")  # fmt: skip
    ys = [label(p, cutoff_ms, h_model) for p in customers]
    print("  calibration (learned H): decile, customers, predicted, observed")
    pairs = [(latest[p].score, y) for p, y in zip(customers, ys, strict=True) if p in latest]
    for d, n, pred, obs in deciles(pairs):
        print(f"    {d:>2} {n:>7,} {pred:>9.3f} {obs:>9.3f}")
    return per_day, written


def _rescorings() -> tuple[float, float]:
    """This process's churn rescorings by the silent book so far, and those not written."""
    churn = {"model": "churn"}
    return (
        metrics.value("scrm_rescore_delay_seconds_count", churn),
        metrics.value("scrm_rescorings_unwritten_total", churn),
    )


def synthetic_history(profiles: int, days: int, per_day: int, seed: int) -> tuple[list[bytes], int]:
    """`days` of history of synthetic customers ending now, and a cut-off 120 days before
    its end (what follows is what the labels read)."""
    gen = SyntheticCustomers(SyntheticConfig(profiles=profiles, seed=seed, late_share=0.0,
                                             malformed_share=0.0, duplicate_share=0.0))  # fmt: skip
    n = days * per_day
    now = int(time.time() * 1000)
    start = now - n * DAY // per_day
    return [gen.next_event(start + i * DAY // per_day) for i in range(n)], now - 120 * DAY


def cdnow_history() -> tuple[list[bytes], int]:
    """CDNOW's purchases moved forward in time (whole weeks) so they end a week ago: the
    contract accepts no event before 2000."""
    import cdnow

    raw = cdnow.events()
    last = max(orjson.loads(v)["ts"] for v in raw)
    shift = (int(time.time() * 1000) - 7 * DAY - last) // (7 * DAY) * 7 * DAY
    moved = []
    for v in raw:
        e = orjson.loads(v)
        e["ts"] += shift
        moved.append(orjson.dumps(e))
    return moved, cdnow.CALIBRATION_END_MS + cdnow.TS_SHIFT_MS + shift


def rescore_cost(s: Settings, step: float) -> float:
    """µs per rescoring of a silent profile as the silent book makes it (`on_silence`: the
    model's inputs as of each due time, the vector, the served model's score, an
    observation at most daily, the next due time; the explanation and the `Score` only
    when written) over 90
    days of silence after 30 hours of activity, with the churn model's `score_step` set to
    `step` (0: every rescoring written; 0.999: none), no I/O."""
    fs = feature_set(s)
    models = model_set(s, fs)
    assert fs is not None and models is not None
    m = replace(models.by_name("churn"), score_step=step)
    registry = ModelRegistry({m.name: m})
    learner = Learner(m, ModelSettings())
    rng = random.Random(2)  # weights learned from noise, so the score moves with the inputs
    learner._learn([({n: rng.random() * 3 for n in m.inputs}, int(rng.random() < 0.3)) for _ in range(2000)])
    learner.n_learned = 10**6
    registry.install(learner.publish(1.0))
    plan = ScoringPlan((m,), (), first_seen_feature(fs), registry)
    fplan = FeaturePlan(fs)
    bits = model_inputs(fplan, plan)
    t0 = 1_800_000_000_000
    spent, n = 0.0, 0
    while n < 5000:
        feats = ProfileFeatures(fplan, 3_600_000)
        for i in range(30):
            etype = ("page_view", "session_start", "order_paid", "add_to_cart")[i % 4]
            ts = t0 + i * 3_600_000
            feats.add(Event(f"e{i}", "p", etype, ts, "web", {"amount": 20.0}, {}, {}, 0, "b", 0, 0))
        st = ProfileScoring()
        last = t0 + 31 * 3_600_000
        seen = Event("x", "p", "page_view", last, "web", {}, {}, {}, 0, "b", 0, 0)
        st.on_events(plan, "p", [seen], last, partial(feats.read, bits, last), 0)
        delays: list[tuple[str, int]] = []
        t = time.perf_counter()
        while (at := st.next_rescore(plan)) < last + 90 * DAY:
            if st.on_silence(plan, "p", at, partial(feats.read, bits, at), delays) is None:
                st.on_refresh(plan, "p", at, partial(feats.read, bits, at))  # a crossing: the wake's
            n += 1
        spent += time.perf_counter() - t
    return spent / n * 1e6


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
    control = RunControl()
    flow = build_flow(s, KafkaEventsSource(s.kafka, control), make_sinks(s))
    return base.timed(flow, s, control)


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
    ap.add_argument("--skip-cutoff", action="store_true")
    ap.add_argument("--only-cutoff", action="store_true", help="the cut-off evaluation and costs only")
    ap.add_argument("--cutoff-profiles", type=int, default=2000)
    ap.add_argument("--cutoff-days", type=int, default=240)
    ap.add_argument("--cutoff-per-day", type=int, default=1000)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    s0 = load_settings(env={})
    models0 = model_set(s0, feature_set(s0))
    assert models0 is not None  # the shipped defaults declare models

    score_us, learn_us = cost(s0)
    if not args.skip_cutoff:
        syn, cut = synthetic_history(args.cutoff_profiles, args.cutoff_days, args.cutoff_per_day, args.seed)
        churn_acts = frozenset(models0.by_name("churn").label.activity_types)
        per_day = {"synthetic": cutoff_eval("synthetic", syn, cut, churn_acts)}
        try:
            raw, cut = cdnow_history()
        except (ImportError, SystemExit) as exc:
            print(f"\nCDNOW: skipped ({exc})")
        else:
            per_day["CDNOW"] = cutoff_eval("CDNOW", raw, cut, frozenset({"order_paid"}), extra_h=273 * DAY)
        all_us, none_us = rescore_cost(s0, 0.0), rescore_cost(s0, 0.999)
        print(f"\ncost per rescoring of a silent profile, no I/O (the silent book's path: the model's "
              f"inputs as of its due time + vector + served model + an observation at most daily): "
              f"{all_us:.1f} µs written (+ explanation + Score; then a scores row and a Redis hash "
              f"field), {none_us:.1f} µs not written")  # fmt: skip
        # The bound: aging a silent profile costs no more per day of event time than one
        # event does; one event's scoring alone (no features, no I/O) is the floor used here.
        for name, (n, written) in per_day.items():
            each = written * all_us + (1 - written) * none_us
            aging = n * each
            verdict = "within" if aging <= score_us else "over"
            print(f"aging a silent profile ({name}): {aging:.1f} µs per customer per day of event time "
                  f"({n:.3f} rescorings x {each:.1f} µs, {written:.0%} written) against {score_us:.1f} µs "
                  f"for one event's scoring alone: {verdict} the bound")  # fmt: skip
        if args.only_cutoff:
            return

    if not args.skip_quality:
        got = quality(args.profiles, args.days, args.per_day, args.seed)
        print(f"{'model':<6} {'labels':>8} {'pos rate':>9} {'ROC AUC':>8} {'log loss':>9} "
              f"{'baseline AUC':>13} {'baseline':>10}")  # fmt: skip
        base_names = {m.name: ",".join(m.baseline) for m in models0.models}
        for name, r in sorted(got.items()):
            print(f"{name:<6} {r.n_learned:>8,} {r.positive_rate:>9.3f} {r.roc_auc:>8.3f} {r.log_loss:>9.3f} "
                  f"{r.baseline_roc_auc:>13.3f} {base_names[name]:>10}")  # fmt: skip

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
