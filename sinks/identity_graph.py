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
- **Atomic.** A batch is one script call over four keys under the hash tag ``{idg}``:
  one slot, so it runs on Redis Cluster too (the graph then lives on one shard).
- **Never a silent drop.** Connection errors and timeouts are retried by the
  `RetryPolicy` (a warning per attempt), then raise ``SinkError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import redis

from flows.core.errors import SinkError
from flows.core.identifiers import PRIORITY as IDENTIFIER_PRIORITY
from sinks.redis_store import text
from sinks.retry import RetryPolicy

SCRIPT_PATH = Path(__file__).with_name("identity_graph.lua")
PROFILE_ID = "profileId"
# Most trusted first: the CRM's own id, then the identifiers' order (names not listed come
# after, in name order).
PRIORITY = (PROFILE_ID, *IDENTIFIER_PRIORITY)
LIMITS: Mapping[str, int] = {PROFILE_ID: 1, "unionId": 1, "phone": 1, "email": 3, "openId": 10, "deviceId": 5}


class Identifier(NamedTuple):
    name: str  # as events name it: phone, email, unionId, ... or profileId
    key: str  # its keyed hash (the id itself for a profileId)

    @property
    def founder(self) -> str:
        """The id of a person this identifier founds."""
        return self.key if self.name == PROFILE_ID else f"id:{self.name}:{self.key[:20]}"


class Merge(NamedTuple):
    merge_id: str
    loser: str
    winner: str


class Resolution(NamedTuple):
    person: str
    merges: tuple[Merge, ...]  # the persons this event merged into `person`
    refused: tuple[tuple[Identifier, str], ...]  # identifiers left out, and why


class IdentityGraph:
    """Resolves identifiers to persons in Redis (see the module docstring for the rules)."""

    def __init__(
        self,
        client: redis.Redis,
        retry: RetryPolicy,
        limits: Mapping[str, int] = LIMITS,
        priority: Sequence[str] = PRIORITY,
        prefix: str = "scrm:{idg}",
    ) -> None:
        self._client = client
        self._retry = retry
        self._limits = orjson.dumps(dict(limits))
        self._rank = {name: i for i, name in enumerate(priority)}
        self.keys = [f"{prefix}:owner", f"{prefix}:born", f"{prefix}:members", f"{prefix}:merges"]
        self._script = client.register_script(SCRIPT_PATH.read_text(encoding="utf-8"))

    def _trusted_first(self, ids: Sequence[Identifier]) -> list[Identifier]:
        last = len(self._rank)
        unique = {(i.name, i.key): i for i in ids}
        return sorted(unique.values(), key=lambda i: (self._rank.get(i.name, last), i.name, i.key))

    def resolve(self, batch: Sequence[tuple[int, Sequence[Identifier]]]) -> list[Resolution]:
        """Each (event time ms, identifiers) of `batch`, in order, resolved to its person;
        every event must carry at least one identifier."""
        if not batch:
            return []
        events: list[Any] = []
        by_key: dict[str, Identifier] = {}
        for ts, ids in batch:
            if not ids:
                raise ValueError("an event without identifiers has no person to resolve")
            ordered = self._trusted_first(ids)
            for i in ordered:
                by_key[f"{i.name}:{i.key}"] = i
            events.append([str(ts), [[f"{i.name}:{i.key}", i.name, i.founder] for i in ordered]])
        args = [self._limits, orjson.dumps(events)]
        raw = self._call(
            lambda: self._script(keys=self.keys, args=args), f"identity graph ({len(batch)} events)"
        )
        out = []
        for person, merged, refused in orjson.loads(raw):
            out.append(
                Resolution(
                    person,
                    tuple(Merge(*m) for m in merged or ()),
                    tuple((by_key[k], why) for k, why in refused or ()),
                )
            )
        return out

    def person_of(self, ident: Identifier) -> str | None:
        """The person `ident` belongs to (None if the graph has not seen it)."""
        got = self._call(
            lambda: self._client.hget(self.keys[0], f"{ident.name}:{ident.key}"), "identity lookup"
        )
        return None if got is None else text(got)

    def identifiers_of(self, person: str) -> list[Identifier]:
        """The identifiers `person` holds, in the order it gained them."""
        got = self._call(lambda: self._client.hget(self.keys[2], person), "identity lookup")
        if got is None:
            return []
        out = []
        for key, name in orjson.loads(got):
            out.append(Identifier(name, key[len(name) + 1 :]))
        return out

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
