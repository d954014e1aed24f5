"""`scrm models export|import|list`: move a trained model between deployments.

An export file is one published version: a first line ``SCRM-MODEL 1 <json metadata>``
followed by the pickled `PublishedModel`. Import checks the file against this
deployment's declaration (same name, same fingerprint: inputs and pipeline) and publishes
it as the next version, so running engines serve it within ``models.sync_interval_s`` and
a learner built afterwards continues from it. Pickle runs code on load: import only files
from deployments you trust.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import redis

from flows.core.errors import ConfigError
from scoring.learner import PublishedModel
from scoring.modeldefs import ModelSet
from scoring.registry import model_key, read_version, write_version
from sinks.redis_store import text

MAGIC = b"SCRM-MODEL 1 "


def describe(client: redis.Redis, models: ModelSet) -> list[dict[str, Any]]:
    """One row per declared model: what is published for it in Redis."""
    rows = []
    for m in models.models:
        got = client.hmget(model_key(m.name), ["version", "n_learned", "published_ms", "fingerprint"])
        version, n, published, fp = (text(v) if v else "" for v in got)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(published) / 1000)) if published else ""
        rows.append({
            "model": m.name, "entity": m.entity, "version": int(version or 0), "n_learned": int(n or 0),
            "published": when, "matches_declaration": fp == m.fingerprint() if fp else None,
        })  # fmt: skip
    return rows


def export_model(client: redis.Redis, name: str, path: Path) -> PublishedModel:
    pm = read_version(client, name)
    if pm is None:
        raise ConfigError(f"no published version of model {name!r} in Redis (run the engine first)")
    meta = {"name": pm.name, "version": pm.version, "n_learned": pm.n_learned, "fingerprint": pm.fingerprint}
    path.write_bytes(MAGIC + orjson.dumps(meta) + b"\n" + pm.to_bytes())
    return pm


def read_export(path: Path) -> tuple[dict[str, Any], PublishedModel]:
    data = path.read_bytes()
    head, sep, body = data.partition(b"\n")
    if not head.startswith(MAGIC) or not sep:
        raise ConfigError(f"{path}: not a scrm-stream model export (no {MAGIC.decode().strip()!r} header)")
    try:
        meta = orjson.loads(head[len(MAGIC) :])
        pm = PublishedModel.from_bytes(body)
    except Exception as exc:
        raise ConfigError(f"{path}: damaged model export: {exc}") from None
    return meta, pm


def import_model(client: redis.Redis, name: str, path: Path, models: ModelSet) -> PublishedModel:
    """Publish the exported model as the next version of `name`; refuses a mismatch."""
    _, pm = read_export(path)
    try:
        mdef = models.by_name(name)
    except KeyError:
        raise ConfigError(f"model {name!r} is not declared in {models.source}") from None
    if pm.name != name:
        raise ConfigError(f"{path}: holds model {pm.name!r}, not {name!r}")
    if pm.fingerprint != mdef.fingerprint():
        raise ConfigError(
            f"{path}: model {name!r} was trained for other inputs or another pipeline "
            f"(fingerprint {pm.fingerprint}, this deployment declares {mdef.fingerprint()})"
        )
    current = client.hget(model_key(name), "version")
    pm.version = max(pm.version, int(current or 0)) + 1
    pm.published_ms = int(time.time() * 1000)
    import uuid

    pm.uid = uuid.uuid4().hex[:12]
    write_version(client, pm)
    return pm
