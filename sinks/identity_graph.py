"""The identity graph in Redis: which person each identifier belongs to, linked and merged
as events show identifiers together (``sinks/identity_graph.lua``, one call per batch).

Rules
-----
- **One owner.** Every identifier belongs to exactly one person. The graph holds keyed
  hashes (``events.pii_hashes``), never clear values; a ``profileId`` is held as itself.
- **Linking.** An event resolves to the person of its identifiers; identifiers of several
  persons link them: the persons merge into the **oldest** (the earliest event time seen
  for any of its identifiers, ties by id), so the winner is the same in any order.
  Identifiers no person holds yet join the event's person.
- **New persons** take the id of their most trusted identifier: the ``profileId``
  itself, else ``id:<name>:<hash>`` as `flows.core.pii.profile_from_hashes` derives a
  profile id, so a person known by one identifier keeps today's profile id.
- **Limits against over-merging.** A person holds at most ``limits[name]`` identifiers of
  each name. When linking an event's identifiers would break a limit, the least trusted
  (``priority``) of those that bring an identifier of that name (itself or through its
  person) is left out (not linked, not added) and reported as refused, until the rest
  fit; an identifier that breaks no limit still links. A device shared by two people
  with different phones merges no one; a second phone for a person is refused, not
  merged blindly.
- **Idempotent.** Replaying events resolves them to the same persons and merges nothing
  again; each merge has an id (``m:<loser>><winner>``) recorded with its time.
- **Replays answer as the first time.** A record with a source position (origin,
  partition, offset >= 0) has its answer remembered under that position, so a replay
  after a crash routes it to the person it went to before, not to the person the graph
  has merged it into since: the graph runs ahead of the recovery snapshots, the memo
  keeps routing consistent with them. A partition's memo spans its last ``memo_records``
  offsets (records of a topic, bytes of a file; in buckets of `MEMO_BUCKET`), each bucket
  expiring ``memo_ttl_s`` after its last write; an answer is used only for the record it
  was given to (a fingerprint of its event id).
- **Atomic.** A batch is one script call over keys under the hash tag ``{idg}``:
  one slot, so it runs on Redis Cluster too (the graph then lives on one shard).
- **Never a silent drop.** Connection errors and timeouts are retried by the
  `RetryPolicy` (a warning per attempt), then raise ``SinkError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import redis
from redis.cluster import RedisCluster

from flows.core.errors import SinkError
from flows.core.identifiers import LIMITS, PROFILE_ID
from flows.core.identifiers import PRIORITY as IDENTIFIER_PRIORITY
from sinks.redis_store import text
from sinks.retry import RetryPolicy

SCRIPT_PATH = Path(__file__).with_name("identity_graph.lua")
# Most trusted first: the CRM's own id, then the identifiers' order (names not listed come
# after, in name order).
PRIORITY = (PROFILE_ID, *IDENTIFIER_PRIORITY)
PERSON = "person"  # the kind of a merged person's own id among the winner's members
MEMO_BUCKET = 1 << 16  # source offsets per memo key


class Identifier(NamedTuple):
    """An identifier as the graph files it (a person it founds is named by the script's
    `founder`: the profileId itself, else ``id:<name>:<first 20 of the hash>``)."""

    name: str  # phone, email (their kind), unionId, ... or profileId
    key: str  # its keyed hash (the id itself for a profileId)


class Merge(NamedTuple):
    merge_id: str
    loser: str
    winner: str


class Change(NamedTuple):
    """An identifier that changed owner: its graph key (``<name>:<key>``) and name, by which
    merge ('' when new) and when, in the graph's own order (``seq`` rises with every
    change; a replay reports the same)."""

    key: str
    name: str
    merge_id: str
    seq: int

    @property
    def identifier(self) -> Identifier:
        return _identifier(self.key, self.name)


class Position(NamedTuple):
    """Where a record sits in its source: a replay brings it back at the same position;
    `record` (its event id) tells it from another record at that position (a file
    rewritten, a topic made again)."""

    origin: str
    partition: int
    offset: int
    record: str = ""


class Resolution(NamedTuple):
    person: str
    merges: tuple[Merge, ...]  # the persons this event merged into `person`
    refused: tuple[tuple[Identifier, str], ...]  # identifiers left out, and why
    # identifiers whose owner became `person` here, new or through a merge; a merged person
    # itself comes as Identifier("person", <its id>)
    changed: tuple[Change, ...] = ()


class IdentityGraph:
    """Resolves identifiers to persons in Redis (see the module docstring for the rules)."""

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        retry: RetryPolicy,
        limits: Mapping[str, int] = LIMITS,
        priority: Sequence[str] = PRIORITY,
        prefix: str = "scrm:{idg}",
        memo_records: int = 1 << 26,
        memo_ttl_s: int = 600,
    ) -> None:
        self._client = client
        self._retry = retry
        self._prefix = prefix
        self._memo_buckets = -(-memo_records // MEMO_BUCKET) + 1
        self._memo_ttl = str(memo_ttl_s)
        self._top: dict[tuple[str, int], int] = {}  # newest memo bucket written per partition
        self._limits = orjson.dumps(dict(limits))
        self._rank = {name: i for i, name in enumerate(priority)}
        self.keys = [f"{prefix}:{k}" for k in ("owner", "born", "members", "merges", "seq")]
        self._script = client.register_script(SCRIPT_PATH.read_text(encoding="utf-8"))

    def _trusted_first(self, ids: Sequence[Identifier]) -> Sequence[Identifier]:
        if len(ids) == 1:
            return ids
        last = len(self._rank)
        unique = {(i.name, i.key): i for i in ids}
        return sorted(unique.values(), key=lambda i: (self._rank.get(i.name, last), i.name, i.key))

    def resolve(
        self,
        batch: Sequence[tuple[int, Sequence[Identifier]]],
        positions: Sequence[Position | None] | None = None,
    ) -> list[Resolution]:
        """Each (event time ms, identifiers) of `batch`, in order, resolved to its person;
        every event must carry at least one identifier. `positions` (one per event, None
        for a record without one) are where the answers are remembered for replays."""
        if not batch:
            return []
        events: list[Any] = []
        by_key: dict[str, Identifier] = {}
        keys = list(self.keys)
        memo_index: dict[str, int] = {}
        stale: list[str] = []
        for n, (ts, ids) in enumerate(batch):
            if not ids:
                raise ValueError("an event without identifiers has no person to resolve")
            ordered = self._trusted_first(ids)
            for i in ordered:
                by_key[f"{i.name}:{i.key}"] = i
            memo, field, fp = 0, "", ""
            pos = positions[n] if positions is not None else None
            if pos is not None and pos.offset >= 0:
                key = self._memo_key(pos, stale)
                memo = memo_index.get(key, 0)
                if not memo:
                    keys.append(key)
                    memo = memo_index[key] = len(keys)
                field = str(pos.offset)
                fp = hashlib.blake2b(pos.record.encode(), digest_size=6).hexdigest()
            events.append([str(ts), [[f"{i.name}:{i.key}", i.name] for i in ordered], memo, field, fp])
        args: list[bytes | str] = [self._limits, orjson.dumps(events), self._memo_ttl]

        def call() -> Any:
            if stale:
                self._client.delete(*stale)
            return self._script(keys=keys, args=args)

        raw = self._call(call, f"identity graph ({len(batch)} events)")
        out = []
        for answer in orjson.loads(raw):
            if type(answer) is str:  # the event changed nothing
                out.append(Resolution(answer, (), (), ()))
                continue
            person, merged, refused, changed = answer
            out.append(
                Resolution(
                    person,
                    tuple(Merge(*m) for m in merged or ()),
                    tuple((by_key[k], why) for k, why in refused or ()),
                    tuple(Change(*c) for c in changed or ()),
                )
            )
        return out

    def _memo_key(self, pos: Position, stale: list[str]) -> str:
        """The memo key of `pos`; a partition's first write to a newer bucket retires the
        bucket that falls out of its window."""
        bucket = pos.offset // MEMO_BUCKET
        part = (pos.origin, pos.partition)
        top = self._top.get(part)
        if top is None or bucket > top:
            self._top[part] = bucket
            old = bucket - self._memo_buckets
            if old >= 0:
                stale.append(f"{self._prefix}:memo:{pos.origin}:{pos.partition}:{old}")
        return f"{self._prefix}:memo:{pos.origin}:{pos.partition}:{bucket}"

    def person_of(self, ident: Identifier) -> str | None:
        """The person `ident` belongs to (None if the graph has not seen it)."""
        got = self._call(
            lambda: self._client.hget(self.keys[0], f"{ident.name}:{ident.key}"), "identity lookup"
        )
        return None if got is None else text(got)

    def person_now(self, profile_id: str) -> str | None:
        """The person `profile_id` belongs to now: the one its profileId or its merged
        person id belongs to, itself if it is a person the graph holds, else None."""
        k = self.keys

        def ask() -> Any:
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(k[0], [f"{PROFILE_ID}:{profile_id}", f"{PERSON}:{profile_id}"])
            pipe.hexists(k[2], profile_id)
            return pipe.execute()

        (by_id, merged), holds = self._call(ask, "identity lookup")
        found = merged or by_id
        if found is not None:
            return text(found)
        return profile_id if holds else None

    def persons_now(self, ids: Iterable[str]) -> dict[str, str]:
        """Of `ids`, those of persons merged into another: id -> the person it belongs to now
        (one HMGET)."""
        asked = list(ids)
        if not asked:
            return {}
        fields = [f"{PERSON}:{i}" for i in asked]
        got = self._call(lambda: self._client.hmget(self.keys[0], fields), "identity lookup")
        return {i: text(p) for i, p in zip(asked, got, strict=True) if p is not None}

    def members_of(self, person: str) -> list[Identifier]:
        """What `person` holds, in the order it gained them: its identifiers, and the
        persons merged into it as ``Identifier("person", <id>)``."""
        got = self._call(lambda: self._client.hget(self.keys[2], person), "identity lookup")
        return [] if got is None else [_identifier(key, name) for key, name in orjson.loads(got)]

    def identifiers_of(self, person: str) -> list[Identifier]:
        """The identifiers `person` holds, in the order it gained them."""
        return [i for i in self.members_of(person) if i.name != PERSON]

    def merges(self) -> dict[str, tuple[str, str, int]]:
        """Every merge recorded: id -> (loser, winner, event time ms)."""
        got = self._call(lambda: self._client.hgetall(self.keys[3]), "identity lookup")
        out = {}
        for k, v in got.items():
            loser, winner, ts = orjson.loads(v)
            out[text(k)] = (loser, winner, int(ts))
        return out

    def _call(self, fn: Any, what: str) -> Any:
        try:
            return self._retry.call(fn, what, retry_on=(redis.ConnectionError, redis.TimeoutError))
        except redis.RedisError as exc:
            raise SinkError(f"{what} failed: {exc}") from exc


def _identifier(key: str, name: str) -> Identifier:
    """An identifier from its graph key ``<name>:<key>``."""
    return Identifier(name, key[len(name) + 1 :])
