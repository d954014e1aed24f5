"""Routing by person (``identity.resolve``) through the real broker, Valkey and chDB: an
app visitor and a mini-program visitor, then a login that shows their identifiers
together: one person from then on, the merge recorded, ``identities`` answering
analysts, and a full replay changing nothing."""

from __future__ import annotations

import io
import re

import orjson
from rich.console import Console
from typer.testing import CliRunner

from flows.app import engine
from flows.app.cli import app

HOUR = 3_600_000
T0 = 1_790_000_000_000


def ev(etype: str, ts: int, eid: str, ids: dict, **props: object) -> bytes:
    return orjson.dumps({"eventId": eid, "type": etype, "ts": ts, "identifiers": ids, "props": props})


def test_two_channels_linked_by_a_login_become_one_person(broker, engine_settings, names, ch) -> None:
    tag = names["tag"]
    device, open_id = {"deviceId": f"dev-{tag}"}, {"openId": f"o-{tag}"}
    events = [
        ev("page_view", T0 - 2 * HOUR, f"{tag}-app", device),  # the app, anonymous
        ev("page_view", T0 - HOUR, f"{tag}-mini", open_id),  # the mini-program
        ev("order_paid", T0 - HOUR // 2, f"{tag}-first", open_id, amount=80.0),
        ev("identify", T0 - HOUR // 4, f"{tag}-who", open_id, tier="gold"),
        ev("login", T0, f"{tag}-login", {**device, **open_id, "phone": "13800000077"}),
        ev("order_paid", T0 + HOUR, f"{tag}-order", open_id, amount=120.0),
        # the mini-program's order again, resent by the app after the login: a repeat
        ev("order_paid", T0 - HOUR // 2, f"{tag}-first", device, amount=80.0),
        ev("page_view", T0 + 2 * HOUR, f"{tag}-again", {"mobile": "+86 138 0000 0077"}),
    ]
    settings = engine_settings(
        {"source": {"kind": "kafka"}, "models": {"enabled": False}, "identity": {"resolve": True}}
    )
    broker.create_topic(names["events"], partitions=1)
    broker.produce(names["events"], [(None, e) for e in events])
    db = settings.clickhouse.database

    def rows() -> dict[str, tuple[str, str]]:
        got = ch.query(
            f"SELECT event_id, profile_id, person_id FROM {db}.events FINAL WHERE source != 'engine'"
        )
        return {e: (p, q) for e, p, q in got.result_rows}

    console = io.StringIO()
    engine.run(settings, Console(file=console, width=200))
    assert re.search(r"persons: [1-9][\d,]* merged into an older one", console.getvalue())  # the summary
    first = rows()
    app_person = first[f"{tag}-app"][1]
    mini_person = first[f"{tag}-mini"][1]
    assert app_person.startswith("id:deviceId:") and mini_person.startswith("id:openId:")
    # the login links both; the older (the app's) wins, and everything after goes to it
    for e in ("login", "order", "again"):
        assert first[f"{tag}-{e}"][1] == app_person, e
    assert first[f"{tag}-order"][0] == mini_person  # the id it arrived with is kept
    merged = ch.query(
        f"SELECT profile_id, props FROM {db}.events FINAL WHERE type = 'profile_merged'"
    ).result_rows
    assert [(p, orjson.loads(props)["merged"]) for p, props in merged] == [(app_person, mini_person)]
    # the person's features hold both orders under the mini-program's id, the one before the
    # login too (its state was handed over), and not the repeat (its dedupe memory too)
    latest = ch.query(
        f"SELECT argMax(values['orders_30d'], ts), argMax(values['revenue_30d'], ts), "
        f"argMax(values['page_views_24h'], ts) FROM {db}.features FINAL WHERE profile_id = %(p)s",
        parameters={"p": app_person},
    ).result_rows
    assert latest == [(2.0, 200.0, 3.0)]
    # analysts: who each identifier belongs to now, and where a merged person went
    owners = dict(
        ch.query(f"SELECT kind, argMax(person_id, seq) FROM {db}.identities GROUP BY kind").result_rows
    )
    assert owners == {"deviceId": app_person, "openId": app_person, "phone": app_person, "person": app_person}
    assert ch.query(f"SELECT merged_id, person_id FROM {db}.person_now").result_rows == [
        (mini_person, app_person)
    ]

    # the customer as one person, whichever alias is looked up
    env = {
        "SCRM_REDIS__URL": settings.redis.url,
        "SCRM_CLICKHOUSE__URL": settings.clickhouse.url,
        "SCRM_CLICKHOUSE__DATABASE": db,
        "SCRM_IDENTITY__RESOLVE": "true",
    }
    for how in (["--identifier", f"openId:o-{tag}"], ["--phone", "13800000077"], [mini_person]):
        got = CliRunner().invoke(app, ["profile", "show", *how, "-f", "json"], env=env)
        assert got.exit_code == 0, got.output
        v = orjson.loads(got.stdout)
        assert v["profile_id"] == v["person"] == app_person, how
        assert v["events"] == 7 and v["also"] == [first[f"{tag}-again"][0], mini_person], how
        assert v["features"]["orders_30d"] == "2", how
        assert v["attributes"] == {"tier": "gold"}, how  # set under the mini-program's id

    # the reports count the ids events arrived with, or, --by-person, the one person
    def customers(*flags: str) -> int:
        got = CliRunner().invoke(app, ["report", "retention", "-f", "json", *flags], env=env)
        assert got.exit_code == 0, got.output
        return sum(r["active"] for r in orjson.loads(got.stdout) if r["week"] == 0)

    assert (customers(), customers("--by-person")) == (3, 1)  # device, openId and mobile ids: one person

    engine.run(settings, Console(file=io.StringIO()))  # replays the topic from the start
    assert rows() == first
    assert ch.query(f"SELECT count() FROM {db}.person_now").result_rows == [(1,)]


def on_every_search(journey: str, channel: str) -> str:
    """A journey that sends on `channel` on every search."""
    return f"""
id: {journey}
name: {channel} on every search
priority: 10
entry: {{policy: every_time}}
max_active: 10
trigger:
  event: {{type: search}}
nodes:
  - {{id: {journey}, type: send, channel: {channel}, template: {journey}}}
"""


def test_caps_and_an_unsubscribe_hold_across_the_aliases_of_one_person(
    broker, engine_settings, names, ch, tmp_path
) -> None:
    tag = names["tag"]
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "ping.yaml").write_text(on_every_search("ping", "email"))
    (folder / "promo.yaml").write_text(on_every_search("promo", "sms"))
    device, open_id = {"deviceId": f"dev-{tag}"}, {"openId": f"o-{tag}"}
    events = [
        ev("page_view", T0 - 3 * HOUR, f"{tag}-app", device),  # the app's person: the older
        ev("search", T0 - 2 * HOUR, f"{tag}-s1", open_id),  # two sends under the mini-program
        ev("unsubscribe", T0 - HOUR, f"{tag}-u", open_id, channel="sms"),
        ev("login", T0, f"{tag}-login", {**device, **open_id}),
        ev("search", T0 + HOUR, f"{tag}-s2", device),  # the same person: caps and unsubscribe hold
    ]
    settings = engine_settings(
        {
            "source": {"kind": "kafka"},
            "models": {"enabled": False},
            "identity": {"resolve": True},
            "journeys": {"dir": str(folder), "caps": [{"count": 2, "per": "1d"}], "dedupe_window_s": 0},
        }
    )
    broker.create_topic(names["events"], partitions=1)
    broker.produce(names["events"], [(None, e) for e in events])
    engine.run(settings, Console(file=io.StringIO()))
    db = settings.clickhouse.database
    rows = ch.query(
        f"SELECT trigger_event_id, journey_id, profile_id, status, reason FROM {db}.actions FINAL "
        f"ORDER BY trigger_event_id, journey_id"
    ).result_rows
    mini = rows[0][2]
    app = next(r[2] for r in rows if r[0] == f"{tag}-s2")
    assert mini.startswith("id:openId:") and app.startswith("id:deviceId:")
    assert [r[1:] for r in rows] == [
        ("ping", mini, "sent", "ok"),
        ("promo", mini, "sent", "ok"),
        ("ping", app, "capped", rows[2][4]),  # the two sends under the mini-program count
        ("promo", app, "suppressed", "suppressed:sms"),  # unsubscribed under the mini-program
    ]
    assert rows[2][4].startswith("cap:")
