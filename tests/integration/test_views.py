"""The daily views of sql/007_daily_views.sql against chDB: rows written before the views
exist (backfill), rows written after (materialized views), rows written twice as a replay
would, the engine's own events; every view checked against an answer computed
independently in plain Python from the rows inserted, and again after re-applying the schema."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from flows.core.contract import Event
from flows.core.messages import ActionRecord
from flows.core.settings import ClickHouseSettings
from sinks.clickhouse import MIGRATIONS, apply_ddl, connect, ddl_statements
from sinks.tables import ACTIONS, EVENTS

VIEWS_FILE = "007_daily_views.sql"
DAY = 86_400_000
T0 = 1_788_048_000_000  # 2026-08-30 00:00:00 UTC: a day boundary
TYPES = ["session_start", "product_view", "order_paid", "page_view"]
SOURCES = ["app", "web", "pos"]
ORIGINS = ["kafka:events", "file:/import/crm.jsonl"]
CENT = Decimal("0.0001")


@pytest.fixture
def client(chdb_path: Path, names: dict[str, str]) -> Iterator[Client]:
    """The test process's chDB (no broker or Redis needed here)."""
    c = connect(ClickHouseSettings(url=f"chdb://{chdb_path}", database=names["database"]))
    yield c
    c.close()


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def _events(rng: random.Random, n: int, tag: str) -> list[Event]:
    """Customers' events over 5 days, many at the edges of a UTC day; orders with amounts."""
    out = []
    for i in range(n):
        edge = rng.random() < 0.3
        ts = T0 + rng.randrange(5) * DAY + (rng.choice([-1, 0, 1]) if edge else rng.randrange(DAY))
        typ = rng.choice(TYPES)
        props: dict[str, Any] = {}
        if typ == "order_paid":
            props = {"orderId": f"o-{tag}{i}", "currency": "CNY" if rng.random() < 0.8 else "USD"}
            if rng.random() < 0.95:  # else: no amount, counted as an order of 0
                props["amount"] = rng.choice([16.4, 0.1, 0.2, 19.99, round(rng.uniform(1, 900), 2)])
        out.append(
            Event(
                f"e-{tag}{i}", f"p{rng.randrange(25)}", typ, ts, rng.choice(SOURCES), props, {}, {},
                ts + 50, rng.choice(ORIGINS), 0, i,
            )
        )  # fmt: skip
    return out


def _engine_events(rng: random.Random, n: int, tag: str) -> list[Event]:
    """The engine's own changes (origin 'engine'); one is even an order: none is counted."""
    out = []
    for i in range(n):
        ts = T0 + rng.randrange(5 * DAY)
        typ = "order_paid" if i == 0 else rng.choice(["tag_added", "segment_changed", "page_view"])
        props = {"amount": 1000.0, "currency": "CNY"} if typ == "order_paid" else {"tag": "vip"}
        out.append(Event(f"eng-{tag}{i}", f"p{rng.randrange(40)}", typ, ts, "engine", props, {}, {}, ts,
                         "engine", 0, -1))  # fmt: skip
    return out


def _actions(rng: random.Random, n: int, tag: str) -> list[ActionRecord]:
    statuses = ["sent", "capped", "suppressed", "holdout"]
    out = []
    for i in range(n):
        ts = T0 + rng.randrange(4) * DAY + (rng.choice([-1, 0]) if rng.random() < 0.3 else rng.randrange(DAY))
        out.append(
            ActionRecord(
                f"a-{tag}{i}", rng.choice(["j1", "j2"]), 1, rng.choice(["n1", "n2"]), f"p{rng.randrange(25)}",
                rng.choice(["sms", "email"]), "t", "", rng.choice(statuses), "r", f"e{i}", ts, ts + 5, {},
            )
        )  # fmt: skip
    # one decision written twice with two statuses (deferred, then sent): one per status
    first = out[0]._replace(status="quiet_hours_deferred")
    return [*out, first]


def _insert(
    client: Client, db: str, events: list[Event], actions: list[ActionRecord], old: bool = False
) -> None:
    """Rows as the engine writes them; `old`: as an engine from before sql/008 (no person_id)."""
    for spec, rows in ((EVENTS, events), (ACTIONS, actions)):
        if rows:
            cols = list(spec.columns)
            data = spec.to_columns(rows)
            if old and "person_id" in cols:
                del data[cols.index("person_id")]
                cols.remove("person_id")
            client.insert(f"{db}.{spec.table}", data, column_names=cols, column_oriented=True)


def _expected(events: list[Event], actions: list[ActionRecord]) -> dict[str, list[tuple]]:
    """Every view's rows, recomputed from the inserted rows (duplicates collapse by key)."""
    customers = [e for e in events if e.origin != "engine"]
    by_type: dict[tuple, tuple[set, set]] = defaultdict(lambda: (set(), set()))
    by_day: dict[date, tuple[set, set]] = defaultdict(lambda: (set(), set()))
    for e in customers:
        ids, profiles = by_type[(_day(e.ts_ms), e.type, e.source)]
        ids.add(e.event_id)
        profiles.add(e.profile_id)
        profiles, ids = by_day[_day(e.ts_ms)]
        profiles.add(e.profile_id)
        ids.add(e.event_id)
    by_action: dict[tuple, tuple[set, set]] = defaultdict(lambda: (set(), set()))
    for a in actions:
        ids, profiles = by_action[(_day(a.ts_ms), a.journey_id, a.node_id, a.channel, a.status)]
        ids.add(a.action_id)
        profiles.add(a.profile_id)
    orders: dict[tuple[date, str], Event] = {}
    for e in customers:
        if e.type == "order_paid":
            orders[(_day(e.ts_ms), e.event_id)] = e
    revenue: dict[tuple, list] = defaultdict(lambda: [0, set(), Decimal(0)])
    for (day, _), e in orders.items():
        r = revenue[(day, e.props["currency"])]
        r[0] += 1
        r[1].add(e.profile_id)
        r[2] += Decimal(str(e.props.get("amount", 0))).quantize(CENT)
    return {
        "daily_events": sorted((*k, len(v[0]), len(v[1])) for k, v in by_type.items()),
        "daily_active_profiles": sorted((k, len(v[0]), len(v[1])) for k, v in by_day.items()),
        "daily_actions": sorted((*k, len(v[0]), len(v[1])) for k, v in by_action.items()),
        "daily_revenue": sorted((*k, v[0], len(v[1]), v[2]) for k, v in revenue.items()),
    }


def _views(client: Client, db: str) -> dict[str, list[tuple]]:
    return {
        view: [tuple(r) for r in client.query(f"SELECT * FROM {db}.{view}").result_rows]
        for view in ("daily_events", "daily_active_profiles", "daily_actions", "daily_revenue")
    }


def test_views_exact_with_backfill_replays_and_reapply(client, names) -> None:
    db = names["database"]
    rng = random.Random(7)
    # a database from before the views: schema up to 006, rows already in it
    for name, stmt in ddl_statements(db):
        if name < VIEWS_FILE:
            client.command(stmt)
    before = _events(rng, 150, "b") + _engine_events(rng, 10, "b")
    before_actions = _actions(rng, 80, "b")
    _insert(client, db, before, before_actions, old=True)
    assert VIEWS_FILE in apply_ddl(client, db)  # creates the views and backfills them

    # then live traffic, with replays: rows of both eras inserted again, in later batches
    # and within one batch; an event that came in through two feeds (origins)
    after = _events(rng, 250, "a") + _engine_events(rng, 10, "a")
    after_actions = _actions(rng, 120, "a")
    _insert(client, db, after, after_actions)
    two_feeds = next(e for e in after if e.origin == ORIGINS[0])._replace(origin=ORIGINS[1], offset=99)
    replay = rng.sample(before, 60) + rng.sample(after, 80) + [two_feeds]
    replay_actions = rng.sample(before_actions, 30) + rng.sample(after_actions, 40)
    _insert(client, db, replay + replay[:20], replay_actions + replay_actions[:10])

    events = before + after + replay
    actions = before_actions + after_actions + replay_actions
    want = _expected(events, actions)
    assert all(want.values())
    got = _views(client, db)
    assert got == want
    # and the same as counting over the source tables with FINAL
    total = client.command(f"SELECT uniqExact(event_id) FROM {db}.events FINAL WHERE origin != 'engine'")
    assert (
        sum(r[3] for r in got["daily_events"])
        == total
        == len({e.event_id for e in events if e.origin != "engine"})
    )

    # re-applying the whole schema, as for a database from before schema_migrations, then
    # the views' file once more by hand: the backfills run again, nothing changes
    client.command(f"TRUNCATE TABLE {db}.{MIGRATIONS}")
    assert VIEWS_FILE in apply_ddl(client, db)
    for name, stmt in ddl_statements(db):
        if name == VIEWS_FILE:
            client.command(stmt)
    assert _views(client, db) == want
    assert VIEWS_FILE in apply_ddl(client, db)  # recorded: nothing re-run
    assert _views(client, db) == want


def test_days_are_utc_and_amounts_exact(client, names) -> None:
    """Days split at UTC midnight whatever the session's time zone; amounts as written."""
    db = names["database"]
    apply_ddl(client, db)

    def order(eid: str, profile: str, ts: int, amount: float) -> Event:
        props = {"amount": amount, "currency": "CNY"}
        return Event(eid, profile, "order_paid", ts, "app", props, {}, {}, ts, "kafka:events", 0, 1)

    rows = [order("o1", "p1", T0 - 1, 16.4), order("o2", "p1", T0, 0.1), order("o3", "p2", T0 + 1, 0.2)]
    shanghai = {"session_timezone": "Asia/Shanghai"}
    for _ in range(2):
        client.insert(
            f"{db}.events",
            EVENTS.to_columns(rows),
            column_names=list(EVENTS.columns),
            column_oriented=True,
            settings=shanghai,
        )
    revenue = client.query(f"SELECT * FROM {db}.daily_revenue", settings=shanghai).result_rows
    assert [tuple(r) for r in revenue] == [
        (date(2026, 8, 29), "CNY", 1, 1, Decimal("16.4")),
        (date(2026, 8, 30), "CNY", 2, 2, Decimal("0.3")),
    ]
    assert _views(client, db)["daily_active_profiles"] == [
        (date(2026, 8, 29), 1, 1),
        (date(2026, 8, 30), 2, 2),
    ]
