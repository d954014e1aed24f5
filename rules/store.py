"""Journey definitions in Redis: versioned, switchable, picked up by running engines.

Layout (external tools may read it)::

    scrm:{journeys}                hash  <journey id> -> JSON {"version", "state", "fingerprint",
                                                               "updated_ms", "source"}
    scrm:{journeys}:def:<id>:<n>   string  version n of the journey, canonical JSON (immutable:
                                            a profile inside a journey stays on the version it
                                            entered with, so old versions stay readable)
    scrm:{journeys}:changes        integer, grows with every change (engines poll it)

Every key carries the hash tag ``{journeys}``, so on Redis Cluster the catalog lives on
one shard and a load's MULTI/EXEC (index, definitions and counter together) is legal.
Catalogs written by earlier versions (``scrm:journeys``, ``scrm:journeys:changes``,
``scrm:journeys:def:{<id>}:<n>``, which no transaction could span on a Cluster) are moved
to this layout the first time a client reads or writes the catalog (`upgrade_layout`).

``state`` is ``enabled`` (new entries and running instances), ``paused`` (no new entries;
running instances hold where they are until resumed; the complaint breaker pauses), or
``disabled`` (no new entries; running instances exit at their next step).

`load` is all-or-nothing: every file is validated before anything is written, and the
writes are one MULTI/EXEC transaction. Loading an unchanged definition (same fingerprint)
keeps its version; a changed one gets the next version. `JourneyCatalog` is the engine's
view: it polls ``scrm:{journeys}:changes`` every `interval_s` (default 1 s, so a change is
live within a second or two, well inside the 5 s the journeys issue asks for) and
reloads only what changed.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
import redis

from flows.core.errors import ConfigError
from rules.journeys.canonical import fingerprint, to_canonical
from rules.journeys.model import Journey
from rules.journeys.parse import parse_journey
from rules.live import LiveJourney, TriggerIndex
from sinks.redis_store import REDIS_ERRORS, Poller, RedisClient, text

log = logging.getLogger("scrm.journeys")

INDEX = "scrm:{journeys}"
CHANGES = "scrm:{journeys}:changes"
STATES = ("enabled", "paused", "disabled")
_OLD_INDEX, _OLD_CHANGES, _OLD_DEFS = "scrm:journeys", "scrm:journeys:changes", "scrm:journeys:def:*"
_UPGRADED: weakref.WeakSet[Any] = weakref.WeakSet()
_RELOAD_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, ConfigError)  # a reload keeps the last ones


def def_key(journey_id: str, version: int) -> str:
    """Key of one version, under the catalog's hash tag.

    >>> def_key("cart_abandoned", 3)
    'scrm:{journeys}:def:cart_abandoned:3'
    """
    return f"scrm:{{journeys}}:def:{journey_id}:{version}"


def upgrade_layout(client: RedisClient) -> bool:
    """Move a catalog in the earlier layout to this one (once per client; True if it moved).

    Only a single server can hold the earlier layout (its load transaction spans slots).
    The move is one transaction under WATCH of both indexes and the old counter, so of
    several engines starting at once exactly one moves it and the others find it moved;
    the change counter moves on so running engines reload. Engines of the earlier version
    still running read an empty catalog afterwards: stop them all before upgrading."""
    if client in _UPGRADED:
        return False
    moved = False
    if client.exists(_OLD_INDEX):
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(_OLD_INDEX, INDEX, _OLD_CHANGES)
                    new, old_left = pipe.exists(INDEX), pipe.exists(_OLD_INDEX)
                    if new or not old_left:
                        if new and old_left:
                            log.warning("journeys: both key layouts exist; %s is ignored", _OLD_INDEX)
                        break
                    old: dict[Any, Any] = pipe.hgetall(_OLD_INDEX)
                    defs = list(client.scan_iter(match=_OLD_DEFS, count=1000))
                    values = [pipe.get(k) for k in defs]
                    changes = int(pipe.get(_OLD_CHANGES) or 0)
                    pipe.multi()
                    for key, value in zip(defs, values, strict=True):
                        if value is None:
                            continue
                        name = key.decode() if isinstance(key, bytes) else key
                        jid, version = name[len("scrm:journeys:def:{") :].rsplit("}:", 1)
                        pipe.set(def_key(jid, int(version)), value)
                    if old:
                        pipe.hset(INDEX, mapping=old)
                    pipe.set(CHANGES, changes + 1)
                    pipe.delete(_OLD_INDEX, _OLD_CHANGES, *defs)
                    pipe.execute()
                    log.warning(
                        "journeys: moved %d journeys (%d versions) to the hash-tagged layout",
                        len(old),
                        len(defs),
                    )
                    moved = True
                    break
                except redis.WatchError:
                    continue  # another engine moved it meanwhile: look again
    _UPGRADED.add(client)
    return moved


@dataclass(frozen=True)
class Entry:
    """What the index says about one journey."""

    journey_id: str
    version: int
    state: str
    fingerprint: str
    updated_ms: int
    source: str


def _entry(journey_id: str, raw: bytes | str) -> Entry:
    d = orjson.loads(raw)
    return Entry(
        journey_id, int(d["version"]), d["state"], d["fingerprint"], int(d["updated_ms"]), d["source"]
    )


def index(client: RedisClient) -> dict[str, Entry]:
    upgrade_layout(client)
    return {text(k): _entry(text(k), v) for k, v in client.hgetall(INDEX).items()}


def load(client: RedisClient, journeys: Iterable[Journey]) -> list[tuple[Journey, str]]:
    """Publish validated journeys; returns (journey with its version, what happened) per
    journey: "new", "updated" (a new version) or "unchanged"."""
    journeys = list(journeys)
    current = index(client)
    now = int(time.time() * 1000)
    out: list[tuple[Journey, str]] = []
    pipe = client.pipeline(transaction=True)
    for j in journeys:
        fp = fingerprint(j)
        cur = current.get(j.id)
        if cur is not None and cur.fingerprint == fp:
            out.append((replace(j, version=cur.version), "unchanged"))
            continue
        version = cur.version + 1 if cur is not None else 1
        state = cur.state if cur is not None else "enabled"
        pipe.set(def_key(j.id, version), orjson.dumps(to_canonical(j)))
        meta = {"version": version, "state": state, "fingerprint": fp, "updated_ms": now, "source": j.source}
        pipe.hset(INDEX, j.id, orjson.dumps(meta))
        out.append((replace(j, version=version), "new" if cur is None else "updated"))
    if any(what != "unchanged" for _, what in out):
        pipe.incr(CHANGES)
        pipe.execute()
    return out


def set_state(client: RedisClient, journey_id: str, state: str) -> Entry:
    """Enable, pause or disable a journey (atomically: WATCH the index entry)."""
    if state not in STATES:
        raise ConfigError(f"state {state!r} is not one of {', '.join(STATES)}")
    upgrade_layout(client)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(INDEX)
                raw = pipe.hget(INDEX, journey_id)
                if raw is None:
                    raise ConfigError(f"no journey {journey_id!r} is loaded (scrm journeys list)")
                d = orjson.loads(raw)
                d["state"] = state
                d["updated_ms"] = int(time.time() * 1000)
                pipe.multi()
                pipe.hset(INDEX, journey_id, orjson.dumps(d))
                pipe.incr(CHANGES)
                pipe.execute()
                return _entry(journey_id, orjson.dumps(d))
            except redis.WatchError:
                continue


def read(client: RedisClient, journey_id: str, version: int | None = None) -> Journey:
    """One version of a journey (the current one by default)."""
    entry = index(client).get(journey_id)
    if entry is None:
        raise ConfigError(f"no journey {journey_id!r} is loaded (scrm journeys list)")
    v = entry.version if version is None else version
    raw = client.get(def_key(journey_id, v))
    if raw is None:
        raise ConfigError(f"journey {journey_id!r} has no version {v}")
    return replace(parse_journey(orjson.loads(raw), f"redis:{def_key(journey_id, v)}"), version=v)


class JourneyCatalog(Poller):
    """The engine's view of the journeys in Redis, refreshed when they change (the
    `rules.live.LiveJourneys` the runtime and the guard step read).

    Reads are lock-free (`current` is replaced whole); old versions are fetched on demand
    and cached, for profiles pinned to the version they entered with.
    """

    errors = _RELOAD_ERRORS

    def __init__(self, client: RedisClient, interval_s: float = 1.0, default_tz: str = "UTC") -> None:
        super().__init__("journeys", interval_s, log, "cannot reload definitions (keeping the last ones)")
        self._client = client
        self.default_tz = default_tz  # of profiles whose events never named theirs
        self._changes = -1
        self.current: Mapping[str, LiveJourney] = {}
        self.triggers = TriggerIndex.of({})  # `current` grouped by what wakes each journey
        self._versions: dict[tuple[str, int], Journey] = {}

    def refresh(self) -> bool:
        """Reload if anything changed; True when it did."""
        upgrade_layout(self._client)
        changes = int(self._client.get(CHANGES) or 0)
        if changes == self._changes:
            return False
        live: dict[str, LiveJourney] = {}
        for jid, entry in index(self._client).items():
            live[jid] = LiveJourney(self.version(jid, entry.version), entry.state)
        self.triggers = TriggerIndex.of(live)  # before `current`: a reader sees no journey unindexed
        self.current = live
        self._changes = changes
        log.info(
            "journeys: %s",
            ", ".join(f"{j} v{x.journey.version} {x.state}" for j, x in sorted(live.items())) or "none",
        )
        return True

    def version(self, journey_id: str, version: int) -> Journey:
        key = (journey_id, version)
        got = self._versions.get(key)
        if got is None:
            raw = self._client.get(def_key(journey_id, version))
            if raw is None:
                raise ConfigError(f"journey {journey_id!r} has no version {version}")
            got = replace(
                parse_journey(orjson.loads(raw), f"redis:{def_key(journey_id, version)}"), version=version
            )
            self._versions[key] = got
        return got

    def poll(self) -> bool:
        return self.refresh()

    def start(self) -> None:
        self.refresh()  # the first load fails loudly
        super().start()


def describe(entries: Mapping[str, Entry]) -> list[dict[str, Any]]:
    return [
        {"journey": e.journey_id, "version": e.version, "state": e.state, "source": e.source,
         "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.updated_ms / 1000))}
        for e in sorted(entries.values(), key=lambda e: e.journey_id)
    ]  # fmt: skip
