"""Journey definitions in a real Valkey: versions, all-or-nothing loads, states, and a
running catalog that picks up changes within seconds."""

from __future__ import annotations

import shutil
import threading
import time

import redis
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.resources import config_dir
from rules import store
from rules.journeys.canonical import fingerprint
from rules.journeys.load import load_folder

runner = CliRunner()


def _db(valkey: str, n: int) -> str:
    url = valkey.rsplit("/", 1)[0] + f"/{n}"
    redis.Redis.from_url(url).flushdb()
    return url


def test_load_versions_states_and_hot_reload(valkey, tmp_path) -> None:
    url = _db(valkey, 6)
    client = redis.Redis.from_url(url)
    folder = tmp_path / "journeys"
    shutil.copytree(config_dir() / "journeys", folder)
    env = {"SCRM_REDIS__URL": url}

    res = runner.invoke(app, ["journeys", "load", str(folder)], env=env)
    assert res.exit_code == 0, res.output
    assert "new       new_user_warmup v1" in res.output
    catalog = store.JourneyCatalog(client, interval_s=0.2)
    catalog.start()
    try:
        assert catalog.current["new_user_warmup"].journey.version == 1
        assert catalog.current["new_user_warmup"].state == "enabled"

        # an unchanged reload keeps versions; a changed file gets the next version
        again = runner.invoke(app, ["journeys", "load", str(folder)], env=env)
        assert "unchanged new_user_warmup v1" in again.output
        path = folder / "new_user_warmup.yaml"
        path.write_text(path.read_text().replace("1h", "2h", 1))
        changed = runner.invoke(app, ["journeys", "load", str(folder)], env=env)
        assert changed.exit_code == 0, changed.output
        assert "updated   new_user_warmup v2" in changed.output
        assert "unchanged cart_abandoned v1" in changed.output
        deadline = time.monotonic() + 5  # the bound for a running engine
        while catalog.current["new_user_warmup"].journey.version != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert catalog.current["new_user_warmup"].journey.version == 2
        # the old version stays readable for profiles pinned to it
        assert fingerprint(catalog.version("new_user_warmup", 1)) != fingerprint(
            catalog.version("new_user_warmup", 2)
        )

        paused = runner.invoke(app, ["journeys", "pause", "cart_abandoned"], env=env)
        assert paused.exit_code == 0 and "cart_abandoned v1 is paused" in paused.output
        deadline = time.monotonic() + 5
        while catalog.current["cart_abandoned"].state != "paused" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert catalog.current["cart_abandoned"].state == "paused"
        assert "is enabled" in runner.invoke(app, ["journeys", "resume", "cart_abandoned"], env=env).output

        # a bad file anywhere in the folder: refused with file and path, nothing written
        before = store.index(client)
        (folder / "broken.yaml").write_text(
            "id: broken\nname: b\npriority: 1\nentry: {policy: once}\ntrigger: {event: {type: signup}}\n"
            "nodes:\n  - {type: send, channel: fax, template: x}\n"
        )
        path.write_text(path.read_text().replace("2h", "3h", 1))
        bad = runner.invoke(app, ["journeys", "load", str(folder)], env=env)
        assert bad.exit_code == 1
        said = "".join(bad.output.split())  # rich wraps long lines
        assert "broken.yaml" in said and "nodes[0].channel" in said, said
        assert store.index(client) == before

        listed = runner.invoke(app, ["journeys", "list"], env=env)
        assert "new_user_warmup" in listed.output and "2" in listed.output
        shown = runner.invoke(app, ["journeys", "show", "new_user_warmup", "--version", "1"], env=env)
        assert shown.exit_code == 0 and '"version": 1' in shown.output
        missing = runner.invoke(app, ["journeys", "pause", "nope"], env=env)
        assert missing.exit_code == 1 and "nojourney'nope'" in "".join(missing.output.split())
    finally:
        catalog.stop()


def test_a_catalog_in_the_earlier_layout_is_moved_on_first_use(valkey) -> None:
    """Catalogs written before the keys shared the ``{journeys}`` hash tag (which no
    transaction could span on Redis Cluster) are moved, not lost: definitions, states and
    versions come through, and the change counter moves on so running engines reload."""
    url = _db(valkey, 12)
    client = redis.Redis.from_url(url)
    folder = config_dir() / "journeys"
    loaded = store.load(client, load_folder(folder))
    assert loaded
    store.set_state(client, "cart_abandoned", "paused")
    before = store.index(client)
    defs = {k: client.get(k) for k in client.scan_iter(match="scrm:{journeys}:def:*")}
    changes = int(client.get(store.CHANGES))
    # rewrite it as the earlier version kept it
    client.rename(store.INDEX, "scrm:journeys")
    client.rename(store.CHANGES, "scrm:journeys:changes")
    for key in defs:
        jid, version = key.decode()[len("scrm:{journeys}:def:") :].rsplit(":", 1)
        client.rename(key, f"scrm:journeys:def:{{{jid}}}:{version}")

    # engines starting at once, each with its own client: exactly one moves it
    clients = [redis.Redis.from_url(url) for _ in range(4)]
    start = threading.Barrier(len(clients))
    moved: list[bool] = []

    def upgrade(c: redis.Redis) -> None:
        start.wait()
        moved.append(store.upgrade_layout(c))

    threads = [threading.Thread(target=upgrade, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(moved) == [False, False, False, True]
    fresh = redis.Redis.from_url(url)  # a new client: the move runs once per client
    assert store.index(fresh) == before
    assert {k: fresh.get(k) for k in fresh.scan_iter(match="scrm:{journeys}:def:*")} == defs
    assert int(fresh.get(store.CHANGES)) == changes + 1
    assert not list(fresh.scan_iter(match="scrm:journeys*"))
    assert store.read(fresh, "cart_abandoned").version == before["cart_abandoned"].version
