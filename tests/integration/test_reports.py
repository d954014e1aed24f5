"""Every analysts' report against chDB on a seeded dataset, checked against an answer
computed independently in plain Python from the same rows; and the `scrm report` CLI."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from flows.app.cli import app
from flows.app.reports import reports, run_report
from flows.core.contract import DeadLetter, Event
from flows.core.messages import ActionRecord
from sinks.clickhouse import apply_ddl
from sinks.tables import ACTIONS, DEAD_LETTERS, EVENTS

TYPES = ["session_start", "product_view", "add_to_cart", "checkout_started", "order_paid", "page_view"]
T0 = 1_788_000_000_000  # 2026-08-29


@pytest.fixture
def seeded(ch, names):
    """~2,000 events of 150 profiles over 6 weeks (distinct seconds per profile), dead
    letters, and journey decisions; inserted through the engine's own table specs."""
    db = names["database"]
    apply_ddl(ch, db)
    rng = random.Random(11)
    events: list[Event] = []
    for p in range(150):
        start = T0 + rng.randrange(0, 20 * 86_400) * 1000
        seconds = sorted(rng.sample(range(0, 25 * 86_400), rng.randrange(3, 25)))
        for i, s in enumerate(seconds):
            ts = start + s * 1000
            lag = rng.randrange(10, 5000)
            late = rng.random() < 0.05
            events.append(
                Event(
                    f"e{p}-{i}", f"p{p}", rng.choice(TYPES), ts, "app", {}, {}, {}, ts + lag, "t", 0, i, late
                )
            )
    events.append(
        Event("eng", "p0", "tag_added", T0, "engine", {}, {}, {}, T0, "engine", 0, -1)
    )  # not counted
    reasons = ["invalid_json", "missing_field:ts", "too_large"]
    dead = [DeadLetter(rng.choice(reasons), "", b"x", 1, "t", 0, i, T0 + i) for i in range(40)]
    actions = [
        ActionRecord(
            f"a{i}",
            rng.choice(["j1", "j2"]),
            1,
            "n",
            f"p{i % 7}",
            rng.choice(["sms", "email"]),
            "t",
            "",
            rng.choice(["sent", "capped", "suppressed"]),
            "r",
            "e",
            T0 + i,
            T0 + i,
            {},
        )
        for i in range(300)
    ]
    for spec, rows in ((EVENTS, events), (DEAD_LETTERS, dead), (ACTIONS, actions)):
        ch.insert(
            f"{db}.{spec.table}", spec.to_columns(rows), column_names=list(spec.columns), column_oriented=True
        )
    return db, [e for e in events if e.origin != "engine"], dead, actions


def _funnel_level(evs: list[Event], steps: list[str], window_s: int) -> int:
    """windowFunnel, recomputed: the longest chain of the steps in order, every step within
    `window_s` of the chain's first (times in whole seconds), over every possible start."""
    evs = sorted(evs, key=lambda e: e.ts_ms)
    best = 0
    for i, first in enumerate(evs):
        if first.type != steps[0]:
            continue
        t0 = first.ts_ms // 1000
        level = 1
        for e in evs[i + 1 :]:
            if level == len(steps) or e.ts_ms // 1000 > t0 + window_s:
                break
            if e.type == steps[level]:
                level += 1
        best = max(best, level)
    return best


def _funnel_chain(evs: list[Event], steps: list[str], window_s: int) -> list[int]:
    """The report's chain, recomputed: (second, step number) of every step event, sorted
    (an event matching two steps counts for both); from each step-1 pair, greedily the next
    step's first pair after it, all within `window_s` of the start; the earliest longest
    chain, as its times in seconds."""
    n = min(len(steps), 8)
    pairs = sorted((e.ts_ms // 1000, k + 1) for e in evs for k in range(n) if e.type == steps[k])
    best: list[int] = []
    for i, (t0, k) in enumerate(pairs):
        if k != 1:
            continue
        chain = [t0]
        for t, k2 in pairs[i + 1 :]:
            if len(chain) == n or t > t0 + window_s:
                break
            if k2 == len(chain) + 1:
                chain.append(t)
        if len(chain) > len(best):
            best = chain
    return best


def _funnel_want(by_profile: dict[str, list[Event]], steps: list[str], window_s: int, split_of) -> list:
    """(step, event_type, profiles, conversion, median_s_from_previous, split) rows."""
    groups: dict[str, list[list[int]]] = defaultdict(list)
    for pid, evs in by_profile.items():
        chain = _funnel_chain(evs, steps, window_s)
        if chain:
            groups[split_of(pid)].append(chain)
    want = []
    for split, chains in sorted(groups.items()):
        for k, step in enumerate(steps, start=1):
            reached = [c for c in chains if len(c) >= k]
            gaps = [c[k - 1] - c[k - 2] for c in reached] if k > 1 else []
            median = statistics.median(gaps) if gaps else None
            want.append((k, step, len(reached), round(len(reached) / len(chains), 4), median, split))
    return want


def _assert_funnel_rows(rows: list, want: list) -> None:
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [(w[0], w[1], w[2], w[5]) for w in want]
    for r, w in zip(rows, want, strict=True):
        assert r[3] == pytest.approx(w[3], abs=1e-4)
        assert (r[4] is None) == (w[4] is None) and (w[4] is None or r[4] == pytest.approx(w[4]))


@pytest.mark.parametrize("window_s", [3600, 86_400 * 3])
def test_funnel(seeded, ch, window_s) -> None:
    db, events, _, _ = seeded
    steps = ["session_start", "product_view", "add_to_cart", "order_paid"]
    names, rows = run_report(
        ch, reports()["funnel"], db, {"steps": ",".join(steps), "window_s": str(window_s)}
    )
    by_profile: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_profile[e.profile_id].append(e)
    levels = [_funnel_level(v, steps, window_s) for v in by_profile.values()]
    want = [(k + 1, s, sum(1 for lv in levels if lv >= k + 1)) for k, s in enumerate(steps)]
    assert [(r[0], r[1], r[2]) for r in rows] == want
    assert rows[0][3] == 1.0 and rows[-1][3] == round(want[-1][2] / want[0][2], 4)
    assert names == ["step", "event_type", "profiles", "conversion", "median_s_from_previous", "split"]
    # the chain behind the medians reaches windowFunnel's level for every profile
    assert [len(_funnel_chain(v, steps, window_s)) for v in by_profile.values()] == levels
    _assert_funnel_rows(rows, _funnel_want(by_profile, steps, window_s, lambda pid: ""))
    assert rows[0][4] is None and all(r[5] == "" for r in rows)


SINCE, UNTIL = "2026-08-31 00:00:00", "2026-09-06 00:00:00"


@pytest.fixture
def seeded_funnel(ch, names):
    """Step events of 200 profiles from three sources, many in the same second (windowFunnel
    orders a second's events by step), engine events, and segment snapshots before and after
    the range's end."""
    from flows.core.messages import FeatureUpdate
    from sinks.tables import FEATURES

    db = names["database"]
    apply_ddl(ch, db)
    rng = random.Random(23)
    events: list[Event] = []
    feats: list[FeatureUpdate] = []
    for p in range(200):
        pid = f"p{p}"
        start = T0 + rng.randrange(0, 10 * 86_400) * 1000
        for i in range(rng.randrange(2, 30)):
            s = rng.randrange(0, 3 * 86_400) if rng.random() < 0.5 else rng.randrange(0, 5) * 1800
            ts = start + s * 1000 + rng.randrange(0, 1000)
            src = rng.choice(["app", "web", "pos"])
            events.append(Event(f"f{p}-{i}", pid, rng.choice(TYPES), ts, src, {}, {}, {}, ts, "t", 0, i))
        if p % 10 == 0:  # the engine's own events never count
            eng = Event(f"g{p}", pid, "session_start", start, "eng", {}, {}, {}, start, "engine", 0, -1)
            events.append(eng)
        for s in sorted(rng.sample(range(-86_400, 20 * 86_400), rng.randrange(0, 4))):
            seg = rng.choice(["champions", "loyal", "at_risk", ""])
            feats.append(FeatureUpdate(pid, start + s * 1000, {}, (), {"x": 1.0}, 0, (), seg))
    for spec, rows in ((EVENTS, events), (FEATURES, feats)):
        ch.insert(
            f"{db}.{spec.table}", spec.to_columns(rows), column_names=list(spec.columns), column_oriented=True
        )
    since_ms, until_ms = (
        int(ch.command(f"SELECT toUnixTimestamp64Milli(toDateTime64('{t}', 3))")) for t in (SINCE, UNTIL)
    )
    return db, events, feats, since_ms, until_ms


@pytest.mark.parametrize(
    ("split_by", "steps"),
    [
        ("source", ["session_start", "product_view", "add_to_cart", "order_paid"]),
        ("segment", ["session_start", "product_view", "add_to_cart", "order_paid"]),
        ("", ["page_view", "page_view", "add_to_cart"]),  # an event may be steps 1 and 2
    ],
)
def test_funnel_split_and_median_times(seeded_funnel, ch, split_by, steps) -> None:
    db, events, feats, since_ms, until_ms = seeded_funnel
    window_s = 7200
    given = {"steps": ",".join(steps), "window_s": str(window_s), "since": SINCE, "until": UNTIL}
    _, rows = run_report(ch, reports()["funnel"], db, {**given, "split_by": split_by})
    by_profile: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.origin != "engine" and since_ms <= e.ts_ms < until_ms:
            by_profile[e.profile_id].append(e)
    first_source = {
        pid: min((e.ts_ms, e.event_id, e.source) for e in evs if e.type == steps[0])[2]
        for pid, evs in by_profile.items()
        if any(e.type == steps[0] for e in evs)
    }
    segment: dict[str, tuple[int, str]] = {}
    for f in feats:
        if f.as_of_ms <= until_ms and f.as_of_ms > segment.get(f.profile_id, (-1, ""))[0]:
            segment[f.profile_id] = (f.as_of_ms, f.segment or "")
    split_of = {
        "": lambda pid: "",
        "source": lambda pid: first_source[pid],
        "segment": lambda pid: segment.get(pid, (0, ""))[1],
    }[split_by]
    want = _funnel_want(by_profile, steps, window_s, split_of)
    assert len({w[5] for w in want}) == {"": 1, "source": 3, "segment": 4}[split_by]
    assert any(w[4] for w in want)  # some medians are not 0
    _assert_funnel_rows(rows, want)


def test_funnel_refuses_an_unknown_split(seeded_funnel, ch) -> None:
    db, *_ = seeded_funnel
    with pytest.raises(Exception, match="split_by must be one of"):
        run_report(ch, reports()["funnel"], db, {"split_by": "colour"})


def _monday(ms: int) -> date:
    d = datetime.fromtimestamp(ms / 1000, UTC).date()
    return d - timedelta(days=d.weekday())


def test_retention(seeded, ch) -> None:
    db, events, _, _ = seeded
    _, rows = run_report(ch, reports()["retention"], db, {"weeks": "6"})
    first: dict[str, int] = {}
    for e in events:
        first[e.profile_id] = min(first.get(e.profile_id, e.ts_ms), e.ts_ms)
    active: dict[tuple[date, int], set[str]] = defaultdict(set)
    for e in events:
        cohort = _monday(first[e.profile_id])
        week = (_monday(e.ts_ms) - cohort).days // 7
        if week < 6:
            active[(cohort, week)].add(e.profile_id)
    size = {c: len(active[(c, 0)]) for c, w in active if w == 0}
    want = sorted((c, w, len(ps), size[c], round(len(ps) / size[c], 4)) for (c, w), ps in active.items())
    assert [tuple(r) for r in rows] == want


def test_data_health(seeded, ch) -> None:
    db, events, dead, _ = seeded
    _, rows = run_report(ch, reports()["data_health"], db)
    got = {(m, k): v for m, k, v in rows}
    for reason, n in Counter(d.reason for d in dead).items():
        assert got[("dead_letters", reason)] == n
    assert got[("late_events", "")] == sum(e.late for e in events)
    lags = sorted(e.received_ms - e.ts_ms for e in events)
    assert got[("event_to_ingest_s", "p50")] == pytest.approx(lags[int(0.5 * len(lags))] / 1000)
    assert got[("event_to_ingest_s", "p99")] == pytest.approx(lags[int(0.99 * len(lags))] / 1000)
    assert got[("event_to_ingest_s", "max")] == pytest.approx(lags[-1] / 1000)


def test_guards(seeded, ch) -> None:
    db, _, _, actions = seeded
    _, rows = run_report(ch, reports()["guards"], db)
    want = Counter((a.journey_id, a.channel, a.status) for a in actions)
    assert {(r[0], r[1], r[2]): r[3] for r in rows} == dict(want)


def test_report_cli_lists_runs_and_refuses_unknown_parameters(seeded, engine_settings, names) -> None:
    runner = CliRunner()
    s = engine_settings()
    env = {"SCRM_CLICKHOUSE__URL": s.clickhouse.url, "SCRM_CLICKHOUSE__DATABASE": names["database"]}
    listed = runner.invoke(app, ["report", "--list"], env=env)
    assert listed.exit_code == 0 and all(n in listed.output for n in ("funnel", "retention", "guards"))
    csv = runner.invoke(app, ["report", "guards", "--format", "csv"], env=env)
    assert csv.exit_code == 0 and csv.output.splitlines()[0] == "journey_id,channel,status,decisions"
    bad = runner.invoke(app, ["report", "funnel", "-p", "colour=red"], env=env)
    assert bad.exit_code == 2 and "unknown parameter" in bad.output


@pytest.fixture
def seeded_more(ch, names):
    """Segments, scores with opportunity outcomes, model metrics, and journey decisions with
    conversions, for the reports over the engine's other tables."""
    from flows.core.messages import FeatureUpdate, ModelMetric, Score
    from sinks.tables import FEATURES, MODEL_METRICS, SCORES

    db = names["database"]
    apply_ddl(ch, db)
    rng = random.Random(5)
    segs = ["champions", "loyal", "at_risk", "lost"]
    feats, events, scores, metrics_rows, actions = [], [], [], [], []
    for p in range(120):
        pid = f"p{p}"
        path = [rng.choice(segs) for _ in range(rng.randrange(1, 4))]
        for i, seg in enumerate(path):
            feats.append(FeatureUpdate(pid, T0 + i * 60_000, {}, (), {"x": 1.0}, 0, (), seg))
            before = path[i - 1] if i else ""
            events.append(Event(f"sc{p}-{i}", pid, "segment_changed", T0 + i * 60_000, "engine",
                                {"segment": seg, "from": before}, {}, {}, T0, "engine", 0, -1))  # fmt: skip
        oid = f"o{p}"
        for k in range(rng.randrange(1, 4)):
            scores.append(Score("win", oid, pid, round(rng.random(), 4), 1, T0 + k * 1000, (("a", 1.0),), T0))
        if p % 4:  # closed
            won = rng.random() < 0.5
            etype = "opportunity_won" if won else "opportunity_lost"
            events.append(
                Event(f"cl{p}", pid, etype, T0 + 10_000, "crm", {"opportunityId": oid}, {}, {}, T0, "t", 0, p)
            )
        arm = rng.choice(["a", "b", "holdout"])
        t_dec = T0 + p * 1000
        node, status = ("split", "holdout") if arm == "holdout" else (f"n_{arm}", "sent")
        actions.append(
            ActionRecord(f"x{p}", "j", 1, node, pid, "push", "t", arm, status, "ok", "e", t_dec, t_dec, {})
        )
        if rng.random() < 0.4:  # converts: inside the window or outside it
            dt = rng.choice([3_600_000, 3 * 86_400_000, 9 * 86_400_000])
            paid = Event(f"op{p}", pid, "order_paid", t_dec + dt, "app", {}, {}, {}, T0, "t", 0, p)
            events.append(paid)
    for i in range(6):
        auc, loss = 0.7 + i / 100, 0.3 - i / 100
        at, n = T0 + i * 1_800_000, 1000 * (i + 1)
        metrics_rows.append(ModelMetric("churn", at, T0, i + 1, n, 5, 0, auc, loss, 0.6, 0.35, 0.01))
    tables = [(FEATURES, feats), (EVENTS, events), (SCORES, scores), (MODEL_METRICS, metrics_rows)]
    for spec, rows in [*tables, (ACTIONS, actions)]:
        ch.insert(
            f"{db}.{spec.table}", spec.to_columns(rows), column_names=list(spec.columns), column_oriented=True
        )
    return db, feats, events, scores, metrics_rows, actions


def test_segments(seeded_more, ch) -> None:
    db, feats, events, *_ = seeded_more
    _, rows = run_report(ch, reports()["segments"], db)
    latest: dict[str, tuple[int, str]] = {}
    for f in feats:
        if f.profile_id not in latest or f.as_of_ms > latest[f.profile_id][0]:
            latest[f.profile_id] = (f.as_of_ms, f.segment or "")
    sizes = Counter(seg for _, seg in latest.values())
    moves = Counter((e.props["from"], e.props["segment"]) for e in events if e.type == "segment_changed")
    assert {(r[1]): r[3] for r in rows if r[0] == "size"} == dict(sizes)
    assert {(r[1], r[2]): r[3] for r in rows if r[0] == "move"} == dict(moves)


def test_calibration(seeded_more, ch) -> None:
    db, _, events, scores, *_ = seeded_more
    _, rows = run_report(ch, reports()["calibration"], db)
    last: dict[str, tuple[int, float]] = {}
    for s in scores:
        if s.entity_id not in last or s.as_of_ms > last[s.entity_id][0]:
            last[s.entity_id] = (s.as_of_ms, s.score)
    closed = {
        e.props["opportunityId"]: e.type == "opportunity_won"
        for e in events
        if e.type.startswith("opportunity_")
    }
    by_decile: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for oid, won in closed.items():
        score = last[oid][1]
        by_decile[min(int(score * 10), 9) + 1].append((score, won))
    want = [
        (d, len(v), round(sum(s for s, _ in v) / len(v), 4), round(sum(w for _, w in v) / len(v), 4))
        for d, v in sorted(by_decile.items())
    ]
    assert [r[:2] for r in rows] == [w[:2] for w in want]
    for r, w in zip(rows, want, strict=True):  # rounding of float sums may differ in the last place
        assert r[2] == pytest.approx(w[2], abs=1e-4) and r[3] == pytest.approx(w[3], abs=1e-4)


DAY = 86_400_000


@pytest.fixture
def seeded_churn(ch, names):
    """Churn scores (several a day) and the profiles' events over 100 days: activity,
    other customer events, engine events of an activity type, and activity exactly at a
    score's time and exactly at its horizon's end."""
    from flows.core.messages import Score
    from sinks.tables import SCORES

    db = names["database"]
    apply_ddl(ch, db)
    rng = random.Random(17)
    acts = ["session_start", "page_view", "order_paid", "message_opened"]
    others = ["opportunity_won", "call_logged"]
    events: list[Event] = []
    scores: list[Score] = []
    for p in range(80):
        pid = f"p{p}"
        quiet_from = rng.randrange(10, 110) * DAY  # this profile goes silent here
        for i in range(rng.randrange(5, 40)):
            t = T0 + rng.randrange(0, 100 * 86_400) * 1000
            kind = rng.choice(acts) if t - T0 < quiet_from else rng.choice(others)
            events.append(Event(f"e{p}-{i}", pid, kind, t, "app", {}, {}, {}, t, "t", 0, i))
        for d in range(0, 100, rng.randrange(1, 4)):
            for h in sorted(rng.sample(range(24), rng.randrange(1, 4))):
                t = T0 + d * DAY + h * 3_600_000
                risk = min(1.0, max(0.0, (d * DAY - quiet_from) / (40 * DAY) + rng.uniform(0, 0.6)))
                scores.append(Score("churn", pid, pid, round(risk, 4), 1, t, (("a", 1.0),), t))
                if rng.random() < 0.05:  # edges: activity at t (not after it), at t + 30 days (within)
                    edge = t + (30 * DAY if rng.random() < 0.5 else 0)
                    events.append(Event(f"x{p}-{t}", pid, "page_view", edge, "app", {}, {}, {}, t, "t", 0, 0))
        t = T0 + rng.randrange(0, 100) * DAY
        events.append(Event(f"g{p}", pid, "session_start", t, "eng", {}, {}, {}, t, "engine", 0, -1))
        scores.append(Score("win", f"o{p}", pid, 0.5, 1, T0, (), T0))  # another model: left out
    last = max(e.ts_ms for e in events if e.origin != "engine")
    # a score whose horizon ends at the last event: not passed yet, left out
    scores.append(Score("churn", "p0", "p0", 0.9, 1, last - 30 * DAY, (), 0))
    for spec, rows in ((EVENTS, events), (SCORES, scores)):
        ch.insert(
            f"{db}.{spec.table}", spec.to_columns(rows), column_names=list(spec.columns), column_oriented=True
        )
    return db, events, scores, acts


@pytest.mark.parametrize("any_event", [False, True])
def test_churn_calibration(seeded_churn, ch, any_event) -> None:
    db, events, scores, acts = seeded_churn
    given = {"activity_types": "" if any_event else ",".join(acts), "horizon_s": str(30 * 86_400)}
    names, rows = run_report(ch, reports()["churn_calibration"], db, given)
    horizon = 30 * DAY
    latest = max(e.ts_ms for e in events if e.origin != "engine")
    activity: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e.origin != "engine" and (any_event or e.type in acts):
            activity[e.profile_id].append(e.ts_ms)
    daily: dict[tuple[str, date], tuple[int, float]] = {}
    for s in scores:
        if s.model != "churn":
            continue
        key = (s.profile_id, datetime.fromtimestamp(s.as_of_ms / 1000, UTC).date())
        if key not in daily or s.as_of_ms > daily[key][0]:
            daily[key] = (s.as_of_ms, s.score)
    by_decile: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for (pid, _), (t, score) in daily.items():
        if t + horizon < latest:
            churned = not any(t < a <= t + horizon for a in activity[pid])
            by_decile[min(int(score * 10), 9) + 1].append((score, churned))
    want = [
        (d, len(v), round(sum(s for s, _ in v) / len(v), 4), round(sum(c for _, c in v) / len(v), 4))
        for d, v in sorted(by_decile.items())
    ]
    assert names == ["decile", "scores", "predicted", "observed"]
    assert [r[:2] for r in rows] == [w[:2] for w in want]
    for r, w in zip(rows, want, strict=True):
        assert r[2] == pytest.approx(w[2], abs=1e-4) and r[3] == pytest.approx(w[3], abs=1e-4)
    observed = [w[3] for w in want]
    assert len(want) >= 8 and min(observed) < max(observed) <= 1  # a spread, not a constant


def test_churn_calibration_defaults_follow_the_churn_model() -> None:
    from flows.core.resources import config_dir
    from flows.features.declarations import load_features
    from scoring.modeldefs import load_models

    churn = load_models(config_dir() / "models.toml", load_features(config_dir() / "features.toml")).by_name(
        "churn"
    )
    params = {p.name: p.default for p in reports()["churn_calibration"].params}
    assert params["model"] == churn.name and churn.label.kind == "inactivity"
    assert params["horizon_s"] * 1000 == churn.label.horizon_ms  # 0: automatic
    assert params["horizon_quantile"] == churn.label.horizon_quantile
    assert params["horizon_multiple"] == churn.label.horizon_multiple
    assert set(params["activity_types"]) == set(churn.label.activity_types)


def test_churn_calibration_with_the_automatic_horizon(seeded_churn, ch) -> None:
    """horizon_s = 0: the 0.9 quantile of the gaps of a day or more between a profile's
    activity events, here over all customer events; fallback scores (version 0) left out."""
    db, events, _, _ = seeded_churn
    _, rows = run_report(ch, reports()["churn_calibration"], db, {"activity_types": ""})
    times: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e.origin != "engine":
            times[e.profile_id].append(e.ts_ms)
    gaps = sorted(b - a for ts in times.values() for a, b in itertools.pairwise(sorted(ts)) if b - a >= DAY)
    horizon = min(max(gaps[max(0, math.ceil(0.9 * len(gaps)) - 1)], DAY), 365 * DAY)
    given = {"activity_types": "", "horizon_s": str(horizon // 1000)}
    _, fixed = run_report(ch, reports()["churn_calibration"], db, given)
    assert rows == fixed and len(gaps) >= 50 and sum(r[1] for r in rows) > 0


def test_models(seeded_more, ch) -> None:
    db, *_, metrics_rows, _ = seeded_more
    _, rows = run_report(ch, reports()["models"], db, {"bucket_s": "3600"})
    buckets: dict[int, list] = defaultdict(list)
    for m in metrics_rows:
        buckets[m.ts_ms // 3_600_000].append(m)
    want = []
    for _, ms in sorted(buckets.items()):
        last = max(ms, key=lambda m: m.ts_ms)
        want.append(
            (last.version, max(m.n_learned for m in ms), round(last.roc_auc, 4), round(last.log_loss, 4))
        )
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == want


def test_journey_performance(seeded_more, ch) -> None:
    db, _, events, _, _, actions = seeded_more
    _, rows = run_report(ch, reports()["journey_performance"], db, {"conversion": "order_paid", "days": "7"})
    conv = defaultdict(list)
    for e in events:
        if e.type == "order_paid":
            conv[e.profile_id].append(e.ts_ms)
    arms: dict[tuple[str, str, bool], list[int]] = defaultdict(lambda: [0, 0])
    for a in actions:
        key = (a.node_id, a.variant, a.status == "holdout")
        arms[key][0] += 1
        arms[key][1] += any(a.ts_ms < t <= a.ts_ms + 7 * 86_400_000 for t in conv[a.profile_id])
    (hn, hc) = next(v for k, v in arms.items() if k[2])
    p0 = hc / hn
    got = {(r[1], r[2], bool(r[3])): r for r in rows}
    for key, (n, c) in arms.items():
        r = got[key]
        assert (r[4], r[5]) == (n, c)
        assert r[6] == round(c / n, 4)
        if key[2]:
            assert r[7] is None and r[8] is None
        else:
            p1 = c / n
            assert r[7] == pytest.approx(round(p1 - p0, 4))
            ci = 1.96 * (p1 * (1 - p1) / n + p0 * (1 - p0) / hn) ** 0.5
            assert r[8] == pytest.approx(ci, abs=2e-4)


def test_attribution(ch, names) -> None:
    db = names["database"]
    apply_ddl(ch, db)
    rng = random.Random(9)
    day = 86_400_000
    actions, orders = [], []
    for p in range(80):
        pid = f"p{p}"
        for k in range(rng.randrange(0, 4)):
            j, node = rng.choice([("j1", "a"), ("j1", "b"), ("j2", "c")])
            t = T0 + rng.randrange(0, 20) * day + k
            actions.append(
                ActionRecord(f"s{p}-{k}", j, 1, node, pid, "push", "t", "", "sent", "ok", "e", t, t, {})
            )
        for k in range(rng.randrange(0, 3)):
            t = T0 + rng.randrange(0, 25) * day + rng.randrange(1, 1000) * 1000
            amount = round(rng.uniform(5, 500), 2)
            orders.append(
                Event(f"o{p}-{k}", pid, "order_paid", t, "app", {"amount": amount}, {}, {}, t, "t", 0, k)
            )
    capped = ActionRecord(
        "c0", "j1", 1, "a", "p1", "push", "t", "", "capped", "cap", "e", T0, T0, {}
    )  # not a touch
    ch.insert(f"{db}.actions", ACTIONS.to_columns([*actions, capped]), column_names=list(ACTIONS.columns),
              column_oriented=True)  # fmt: skip
    ch.insert(
        f"{db}.events", EVENTS.to_columns(orders), column_names=list(EVENTS.columns), column_oriented=True
    )
    _, rows = run_report(ch, reports()["attribution"], db, {"window_days": "7"})
    want: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for o in orders:
        touches = [
            a for a in actions if a.profile_id == o.profile_id and a.ts_ms < o.ts_ms <= a.ts_ms + 7 * day
        ]
        if not touches:
            continue
        last = max(touches, key=lambda a: (a.ts_ms, a.journey_id, a.node_id))
        want[(last.journey_id, last.node_id)][0] += 1
        want[(last.journey_id, last.node_id)][1] += o.props["amount"]
        for a in touches:
            want[(a.journey_id, a.node_id)][2] += 1 / len(touches)
            want[(a.journey_id, a.node_id)][3] += o.props["amount"] / len(touches)
    got = {(r[0], r[1]): r[2:] for r in rows}
    assert set(got) == set(want)
    for key, (n, rev, lin, lin_rev) in want.items():
        assert got[key][0] == n and got[key][1] == pytest.approx(rev, abs=0.01)
        assert got[key][2] == pytest.approx(lin, abs=1e-4) and got[key][3] == pytest.approx(lin_rev, abs=0.01)


@pytest.mark.parametrize("name", ["funnel", "retention", "guards"])
def test_charts_are_real_pngs_of_the_expected_size(seeded, engine_settings, names, tmp_path, name) -> None:
    import struct

    s = engine_settings()
    env = {"SCRM_CLICKHOUSE__URL": s.clickhouse.url, "SCRM_CLICKHOUSE__DATABASE": names["database"]}
    path = tmp_path / f"{name}.png"
    res = CliRunner().invoke(app, ["report", name, "--chart", str(path), "--format", "csv"], env=env)
    assert res.exit_code == 0, res.output
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1000, 600)
    assert len(data) > 10_000  # drawn, not blank


def test_calibration_chart(seeded_more, engine_settings, names, tmp_path) -> None:
    from PIL import Image

    s = engine_settings()
    env = {"SCRM_CLICKHOUSE__URL": s.clickhouse.url, "SCRM_CLICKHOUSE__DATABASE": names["database"]}
    path = tmp_path / "calibration.png"
    res = CliRunner().invoke(app, ["report", "calibration", "--chart", str(path)], env=env)
    assert res.exit_code == 0, res.output
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1000, 600)
        assert len(img.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 20  # lines, labels: not blank


@pytest.mark.parametrize(
    ("data", "name", "params"),
    [("seeded_funnel", "funnel", ["-p", "split_by=source"]), ("seeded_churn", "churn_calibration", [])],
)
def test_split_funnel_and_churn_calibration_charts(
    request, engine_settings, names, tmp_path, data, name, params
) -> None:
    from PIL import Image

    request.getfixturevalue(data)
    s = engine_settings()
    env = {"SCRM_CLICKHOUSE__URL": s.clickhouse.url, "SCRM_CLICKHOUSE__DATABASE": names["database"]}
    path = tmp_path / f"{name}.png"
    res = CliRunner().invoke(app, ["report", name, *params, "--chart", str(path), "--format", "csv"], env=env)
    assert res.exit_code == 0, res.output
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1000, 600)
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000) or []
        assert len(colours) > 20  # bars, labels: not blank
        if name == "funnel":  # grouped: one bar colour per source (the tab10 colours)
            counts = dict((c, n) for n, c in colours)
            assert all(counts.get(c, 0) > 500 for c in [(31, 119, 180), (255, 127, 14), (44, 160, 44)])
