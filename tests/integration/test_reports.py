"""Every analysts' report against chDB on a seeded dataset, checked against an answer
computed independently in plain Python from the same rows; and the `scrm report` CLI."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.contract import DeadLetter, Event
from flows.reports import reports, run_report
from rules.actions import ActionRecord
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
    assert names == ["step", "event_type", "profiles", "conversion"]


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
