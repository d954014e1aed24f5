"""`scrm profile show` through the real broker, Valkey and chDB: a customer found by
profile id and by a phone written another way, with masked identifiers, consent and
suppressions from the stream, features, segment and journey decisions; clear errors for
what cannot be found or looked up."""

from __future__ import annotations

import io

import orjson
from rich.console import Console
from typer.testing import CliRunner

from flows.app import engine
from flows.app.cli import app

HOUR = 3_600_000
T0 = 1_790_000_000_000 - (1_790_000_000_000 % (24 * HOUR)) + 4 * HOUR  # 12:00 in Shanghai

runner = CliRunner()


def ev(
    etype: str, ts: int, eid: str, pid: str | None = None, ids: dict | None = None, **props: object
) -> bytes:
    doc: dict = {"eventId": eid, "type": etype, "ts": ts, "props": props}
    if pid is not None:
        doc["profileId"] = pid
    if ids:
        doc["identifiers"] = ids
    return orjson.dumps(doc)


def test_a_customer_by_id_and_by_a_phone_written_another_way(broker, engine_settings, names) -> None:
    tag = names["tag"]
    crm = f"crm-{tag}"
    settings = engine_settings({"source": {"kind": "kafka"}, "models": {"enabled": False}})
    phone = {"phone": "138 0000 0001", "email": " Zhang.San@Example.COM"}
    events = [
        ev("page_view", T0 - HOUR, f"{tag}-0", ids={"mobile": "+86 138-0000-0001"}),  # before any login
        ev("signup", T0, f"{tag}-1", crm, phone),
        ev("consent_granted", T0 + 1, f"{tag}-2", crm, channel="email", version="2026-01"),
        ev("unsubscribe", T0 + 2, f"{tag}-3", crm, channel="sms"),
        ev("order_paid", T0 + HOUR, f"{tag}-4", crm, phone, amount=120.0),
        ev("page_view", T0 + 3 * HOUR, f"{tag}-5", crm),
    ]
    broker.create_topic(names["events"], partitions=2)
    broker.produce(names["events"], [(crm.encode(), e) for e in events])  # one partition: in order
    engine.run(settings, Console(file=io.StringIO()))

    env = {
        "SCRM_REDIS__URL": settings.redis.url,
        "SCRM_CLICKHOUSE__URL": settings.clickhouse.url,
        "SCRM_CLICKHOUSE__DATABASE": settings.clickhouse.database,
    }
    got = runner.invoke(app, ["profile", "show", "--phone", "+8613800000001", "--format", "json"], env=env)
    assert got.exit_code == 0, got.output
    v = orjson.loads(got.stdout)
    assert v["profile_id"] == crm and v["found_by"] == "phone +86****0001"
    assert [p.startswith("id:mobile:") for p in v["also"]] == [True]  # the anonymous visit
    assert v["identifiers"] == {"email": "Z***@Example.COM", "phone": "138****0001"}  # masked, as written
    assert v["events"] == 5
    assert v["consent"]["email"]["granted"] and v["consent"]["email"]["version"] == "2026-01"
    assert v["suppressed"] == {"sms": {"at": v["suppressed"]["sms"]["at"], "kind": "unsubscribe"}}
    assert v["features"] and v["segment"] and v["rfm"]
    welcome = [d for d in v["decisions"] if d["node_id"] == "welcome"]
    assert [(d["status"], d["reason"]) for d in welcome] == [("suppressed", "suppressed:sms")]
    assert [j["journey_id"] for j in v["journeys"]] == ["new_user_warmup"]
    assert v["running"] == []  # the warm-up waited an hour after the sign-up, then ended

    by_email = runner.invoke(
        app, ["profile", "show", "--email", "zhang.san@example.com", "-f", "json"], env=env
    )
    assert by_email.exit_code == 0 and orjson.loads(by_email.stdout)["profile_id"] == crm
    table = runner.invoke(app, ["profile", "show", crm], env=env, terminal_width=200)
    assert table.exit_code == 0, table.output
    flat = "".join(table.output.split())  # rich wraps at the terminal's width
    assert crm in flat and "welcomesms/welcome:suppressed(suppressed:sms)" in flat
    assert "sms(unsubscribe" in flat and "emailgranted" in flat

    missing = runner.invoke(app, ["profile", "show", "--email", "nobody@example.com"], env=env)
    assert missing.exit_code == 1 and "no profile carried email n***@example.com" in missing.output
    for bad, why in (
        ([], "name exactly one of"),
        ([crm, "--phone", "13800000001"], "name exactly one of"),
        (["--phone", "12345"], "is not a valid identifier (invalid_number)"),
        (["--identifier", "openId"], "is not NAME:VALUE"),
    ):
        out = runner.invoke(app, ["profile", "show", *bad], env=env)
        assert out.exit_code == 2 and why in out.output, (bad, out.output)


def test_the_seeds_create_profile_document_through_the_broker(broker, engine_settings, names, ch) -> None:
    """The seed's create-profile document (no type, no eventId) is stored as one
    `profile_updated` event, sent twice or not, and its consent is recorded for every channel."""
    tag = names["tag"]
    doc = orjson.dumps(
        {
            "name": "张三",
            "identifiers": {"phone": "13800000042", "email": f"zs-{tag}@example.com"},
            "tags": ["vip"],
            "segments": ["b2b"],
            "consent": {"time": "2026-01-02T03:04:05Z", "ver": "v1"},
        }
    )
    settings = engine_settings({"source": {"kind": "kafka"}, "models": {"enabled": False}})
    broker.create_topic(names["events"], partitions=1)
    broker.produce(names["events"], [(None, doc), (None, doc)])
    engine.run(settings, Console(file=io.StringIO()))
    db = settings.clickhouse.database
    rows = ch.query(
        f"SELECT event_id, type, props FROM {db}.events FINAL WHERE origin != 'engine'"
    ).result_rows
    assert [(e.startswith("profile:"), t) for e, t, _ in rows] == [(True, "profile_updated")]
    props = orjson.loads(rows[0][2])
    assert props["tags"] == ["vip"] and props["name"] != "张三"  # PII masked
    assert ch.query(f"SELECT count() FROM {db}.dead_letters").result_rows == [(0,)]
    env = {
        "SCRM_REDIS__URL": settings.redis.url,
        "SCRM_CLICKHOUSE__URL": settings.clickhouse.url,
        "SCRM_CLICKHOUSE__DATABASE": db,
    }
    got = runner.invoke(app, ["profile", "show", "--phone", "+86 138 0000 0042", "-f", "json"], env=env)
    assert got.exit_code == 0, got.output
    view = orjson.loads(got.stdout)
    consent = view["consent"]["*"]
    assert consent["granted"] and consent["version"] == "v1"
    # the profile record: its attributes as the engine learned them, PII masked
    assert view["attributes"] == {"name": "(masked)", "segments": ["b2b"], "tags": ["vip"]}, view[
        "attributes"
    ]
    table = runner.invoke(app, ["profile", "show", "--phone", "13800000042"], env=env)
    assert table.exit_code == 0 and "name (masked); segments b2b; tags vip" in table.stdout, table.stdout


SLOW = """
id: slow_followup
name: A follow-up a month after the sign-up
priority: 10
entry: {policy: once}
trigger:
  event: {type: signup}
nodes:
  - {id: a_month, type: wait, duration: 30d}
  - {id: later, type: send, channel: email, template: followup}
"""


def test_running_journeys_as_the_engine_last_wrote_them(broker, engine_settings, names, tmp_path) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "slow.yaml").write_text(SLOW)
    crm = f"crm-{names['tag']}"
    settings = engine_settings(
        {"source": {"kind": "kafka"}, "models": {"enabled": False}, "journeys": {"dir": str(folder)}}
    )
    broker.create_topic(names["events"], partitions=1)
    broker.produce(names["events"], [(None, ev("signup", T0, f"{crm}-1", crm))])
    engine.run(settings, Console(file=io.StringIO()))
    env = {
        "SCRM_REDIS__URL": settings.redis.url,
        "SCRM_CLICKHOUSE__URL": settings.clickhouse.url,
        "SCRM_CLICKHOUSE__DATABASE": settings.clickhouse.database,
    }
    got = runner.invoke(app, ["profile", "show", crm, "-f", "json"], env=env)
    assert got.exit_code == 0, got.output
    # (the catalog may hold the shipped journeys too, loaded by an earlier test)
    [running] = [r for r in orjson.loads(got.stdout)["running"] if r["journey_id"] == "slow_followup"]
    assert running == {
        "journey_id": "slow_followup", "journey_version": 1, "next": "later",
        "waiting_until": "2026-10-21T04:00:00Z", "entered": "2026-09-21T04:00:00Z", "under": "",
    }  # fmt: skip
    table = runner.invoke(app, ["profile", "show", crm], env=env, terminal_width=200)
    assert "slow_followup v1: entered 2026-09-21T04:00:00Z, next later, waiting until" in table.stdout
