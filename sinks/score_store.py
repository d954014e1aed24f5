"""Latest scores in Redis, for journeys and external services, and the published models.

Layout::

    scrm:score:{<profileId>}      hash, hash-tagged for Redis Cluster
        <model>                   latest score of a profile model ("0.8123")
        <model>:version           model version that produced it
        <model>:as_of             event time (epoch ms) of its inputs
        <model>:<entityId>        latest score of an opportunity model for that opportunity
        <model>:<entityId>:as_of
    TTL: models.redis_ttl_s, refreshed with every write

Scores are buffered (bounded), coalesced per field and written one pipeline per flush,
retried with backoff while Redis is unreachable, then the run fails loudly (``SinkError``).
Published model versions are written by `scoring.model_store`.
"""

from __future__ import annotations

from flows.core import metrics
from flows.core.messages import Score
from sinks.redis_hashes import HashStoreSink, HashWrite

KEY_PREFIX = "scrm:score:"


def score_key(profile_id: str) -> str:
    """The Redis key (the braces are a Redis Cluster hash tag).

    >>> score_key("p42")
    'scrm:score:{p42}'
    """
    return f"{KEY_PREFIX}{{{profile_id}}}"


def score_fields(s: Score) -> dict[str, float | int]:
    """The hash fields one score sets (the score to 6 decimals).

    >>> score_fields(Score("churn", "p1", "p1", 0.25, 3, 1000, (), 0))
    {'churn': 0.25, 'churn:version': 3, 'churn:as_of': 1000}
    >>> score_fields(Score("win", "op7", "p1", 0.1234567, 2, 1000, (), 0))
    {'win:op7': 0.123457, 'win:op7:version': 2, 'win:op7:as_of': 1000}
    """
    base = s.model if s.entity_id == s.profile_id else f"{s.model}:{s.entity_id}"
    return {base: round(s.score, 6), f"{base}:version": s.version, f"{base}:as_of": s.as_of_ms}


class RedisScoreStore(HashStoreSink[Score]):
    """Writes served scores to ``scrm:score:{profileId}`` hashes (see module docstring)."""

    name = "redis:scores"
    item = Score
    what = "Redis (scores)"

    def writes(self, items: list[Score]) -> list[HashWrite]:
        per_profile: dict[str, dict[str, float | int]] = {}
        for s in items:  # later scores win field by field
            per_profile.setdefault(s.profile_id, {}).update(score_fields(s))
        return [HashWrite(score_key(pid), fields) for pid, fields in per_profile.items()]

    def written(self, items: list[Score]) -> None:
        counts: dict[str, int] = {}
        for s in items:
            counts[s.model] = counts.get(s.model, 0) + 1
        for model, n in counts.items():
            metrics.SCORES.labels(model=model).inc(n)
