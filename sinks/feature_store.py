"""The online feature store in Redis: one hash per profile, written in pipelined batches.

Layout (external services read it directly)::

    scrm:features:{<profileId>}      hash, hash-tagged for Redis Cluster
        <feature name>  -> value as a decimal string ("3", "129.5")
        as_of           -> event time (epoch ms) the values hold for
        tags            -> the profile's auto-tags, comma-separated ("active,high_value")
        segment         -> RFM segment ("champions", ...; "prospect" before a first order)
        rfm_r/rfm_f/rfm_m -> RFM scores 1-5 (0 before a first order), as of their last update
        journeys        -> running journey instances, "journey|version|pc|resume_ms|entered_ms"
                           comma-separated ("" none; `rules.runtime.ProfileJourneys.running`)
    TTL: features.redis_ttl_s, refreshed with every full write (the first one, and every
         features.snapshot_interval_s of event time): profiles gone quiet disappear

A feature without a value (an ``avg`` with nothing to average, ...) is absent from the
hash. Updates write only the fields that may have changed (the features the new events
touched, those that move with time, windows a bucket holding data left); every
``features.snapshot_interval_s`` of event time the whole map is written again.

Delivery: at-least-once and idempotent (a replay writes the same values); each
batch is one pipeline, retried with backoff while Redis is unreachable, then the run
fails loudly (``SinkError``).
"""

from __future__ import annotations

from flows.core import metrics
from flows.core.messages import FeatureUpdate
from sinks.redis_hashes import HashStoreSink, HashWrite

KEY_PREFIX = "scrm:features:"
# The hash's fields that are not features.
PROFILE_FIELDS = ("as_of", "tags", "segment", "rfm_r", "rfm_f", "rfm_m", "journeys")


def feature_key(profile_id: str) -> str:
    """The hash of one profile; the braces are a Redis Cluster hash tag.

    >>> feature_key("p42")
    'scrm:features:{p42}'
    """
    return f"{KEY_PREFIX}{{{profile_id}}}"


def coalesce(updates: list[FeatureUpdate]) -> list[FeatureUpdate]:
    """One update per profile, writing what the updates written in order would: later
    values win field by field, removals are kept unless a later update gave the field a
    value again, and ``as_of`` is the last update's (not the greatest: an event's update
    is as of its own time, which may be before a timer's refresh just ahead of it)."""
    merged: dict[str, FeatureUpdate] = {}
    for u in updates:
        prev = merged.get(u.profile_id)
        if prev is None:
            merged[u.profile_id] = u
            continue
        values = {**prev.values, **u.values}
        removed = (set(prev.removed) - set(u.values)) | set(u.removed)
        for name in u.removed:
            values.pop(name, None)
        merged[u.profile_id] = u._replace(
            values=values,
            removed=tuple(sorted(removed)),
            as_of_ms=u.as_of_ms,
            full=u.full if u.full is not None else prev.full,
            tags=u.tags if u.tags is not None else prev.tags,
            segment=u.segment if u.segment is not None else prev.segment,
            journeys=u.journeys if u.journeys is not None else prev.journeys,
        )
    return list(merged.values())


class RedisFeatureStore(HashStoreSink[FeatureUpdate]):
    """Writes feature updates to ``scrm:features:{profileId}`` hashes (see module docstring),
    coalesced per profile, one pipeline per flush."""

    name = "redis:features"
    item = FeatureUpdate
    what = "the Redis feature store"

    def writes(self, items: list[FeatureUpdate]) -> list[HashWrite]:
        out = []
        for u in coalesce(items):
            numbers: dict[str, float | int] = dict(u.values)
            numbers["as_of"] = u.as_of_ms
            text: dict[str, str] = {}
            if u.tags is not None:
                text["tags"] = ",".join(u.tags)
            if u.segment is not None:
                text["segment"] = u.segment
            if u.journeys is not None:
                text["journeys"] = u.journeys
            # The TTL is refreshed with every snapshot (enough, and half the commands), and
            # with the running journeys (rare, and they may outlive the features' TTL).
            ttl = u.full is not None or u.journeys is not None
            out.append(HashWrite(feature_key(u.profile_id), numbers, text, u.removed, ttl))
        return out

    def written(self, items: list[FeatureUpdate]) -> None:
        metrics.FEATURE_UPDATES.labels(store="redis").inc(len({u.profile_id for u in items}))
