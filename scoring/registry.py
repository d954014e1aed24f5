"""The models a process serves: installed by its own learners at once, by other processes'
learners through Redis (`ModelSync`).

Redis layout (one hash per model; external tools may read the metadata)::

    scrm:models:{<name>}     hash
        version       published version (integer, grows by one per publish)
        uid           random id of that publish (two publishes never share one)
        n_learned     labelled examples the model had learned
        published_ms  wall clock of the publish
        fingerprint   of the declaration it was trained for (inputs, pipeline)
        blob          the pickled `scoring.learner.PublishedModel`

A version is installed when it differs from the served one and is not older, so an
import (``scrm models import``) or a learner resumed from an older snapshot still wins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from scoring.learner import PublishedModel
from scoring.modeldefs import ModelDef
from scoring.scorer import CalibratedScorer, Scorer, make_scorer
from sinks.redis_store import REDIS_ERRORS, Poller

_POLL_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, ValueError)
log = logging.getLogger("scrm.models")
KEY_PREFIX = "scrm:models:"


def model_key(name: str) -> str:
    """The Redis key (the braces are a Redis Cluster hash tag).

    >>> model_key("churn")
    'scrm:models:{churn}'
    """
    return f"{KEY_PREFIX}{{{name}}}"


@dataclass(frozen=True)
class Served:
    version: int
    uid: str
    n_learned: int
    scorer: Scorer
    published: PublishedModel


class ModelRegistry:
    """Thread-safe map model name -> served version (reads are lock-free dict lookups)."""

    def __init__(self, defs: Mapping[str, ModelDef]) -> None:
        self._defs = dict(defs)
        self._served: dict[str, Served] = {}
        self._lock = threading.Lock()

    def install(self, pm: PublishedModel) -> bool:
        """Serve `pm` if it is for a declared model, of its fingerprint, and not older."""
        mdef = self._defs.get(pm.name)
        if mdef is None or pm.fingerprint != mdef.fingerprint():
            log.warning("model %s version %d ignored: not declared like this here", pm.name, pm.version)
            return False
        with self._lock:
            cur = self._served.get(pm.name)
            if cur is not None and (cur.uid == pm.uid or pm.version < cur.version):
                return False
            scorer = make_scorer(pm.model, mdef.explain_top)
            knots = getattr(pm, "calibration", ((), ()))  # versions published before calibration: none
            self._served[pm.name] = Served(
                pm.version, pm.uid, pm.n_learned, CalibratedScorer(scorer, knots) if knots[0] else scorer, pm
            )
        return True

    def serving(self, name: str) -> Served | None:
        """The version scorers use, once it has learned ``min_learned`` examples."""
        s = self._served.get(name)
        if s is None or s.n_learned < self._defs[name].min_learned:
            return None
        return s

    def latest(self, name: str) -> PublishedModel | None:
        s = self._served.get(name)
        return s.published if s is not None else None

    def names(self) -> list[str]:
        return list(self._defs)


def write_version(client: redis.Redis, pm: PublishedModel) -> None:
    client.hset(
        model_key(pm.name),
        mapping={
            "version": pm.version, "uid": pm.uid, "n_learned": pm.n_learned,
            "published_ms": pm.published_ms, "fingerprint": pm.fingerprint, "blob": pm.to_bytes(),
        },
    )  # fmt: skip


def read_version(client: redis.Redis, name: str) -> PublishedModel | None:
    blob = client.hget(model_key(name), "blob")
    return PublishedModel.from_bytes(blob) if blob else None  # type: ignore[arg-type]


class ModelSync(Poller):
    """Polls Redis for versions published by other processes and installs them."""

    errors = _POLL_ERRORS

    def __init__(self, client: redis.Redis, registry: ModelRegistry, interval_s: float = 1.0) -> None:
        super().__init__("model sync", interval_s, log, "cannot read published models (will keep trying)")
        self._client = client
        self._registry = registry
        self._seen: dict[str, bytes] = {}

    def poll(self) -> int:
        """One round: installs what changed; returns how many versions were installed."""
        installed = 0
        for name in self._registry.names():
            uid = self._client.hget(model_key(name), "uid")
            if not uid or self._seen.get(name) == uid:
                continue
            pm = read_version(self._client, name)
            self._seen[name] = uid  # type: ignore[assignment]
            if pm is not None and self._registry.install(pm):
                installed += 1
                log.info(
                    "model %s version %d installed (%d examples learned)", name, pm.version, pm.n_learned
                )
        return installed
