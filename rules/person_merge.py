"""When two persons merge, the guards' records of the merged one (the loser) fold into the
winner's, the strictest winning, so an unsubscribe under any alias holds for the person
and a cap counts the sends made under every alias.

- **Suppressions** of either side hold for the person, dated at the merge at the latest:
  only a grant after the merge lifts an unsubscribe (a complaint, or a suppression
  without a time, is never lifted).
- **Consent**, as the guards read it (a channel's own record, else ``*``): refused where
  either side refuses, whatever the times, dated at the merge at the latest (a refusal
  without a time stays without one: never overridden); ``*`` is the stricter of the two.
- **Caps** count the sends of both (the sorted sets unite); **dedupe** keeps the later
  send of each template.
- Decision records stay where they were made: the guards look a redirected action up
  under the id it was first decided under (`rules.actions.GuardStep`).

A merge is folded once: its id is recorded with the winner's records (``scrm:merged:{pid}``),
so a replayed merge changes nothing, even after the person re-subscribed. The
loser's keys are read (one pipeline and a SCAN of its cap and dedupe keys), then one
script call (``person_merge.lua``) writes the winner's: each side's keys share its hash
tag, so both run on Redis Cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

from rules.guards import retried
from rules.policy import consent_key, hash_tag, merged_key, suppress_at_key, suppress_key
from sinks.redis_store import text
from sinks.retry import RetryPolicy

SCRIPT = (Path(__file__).with_name("person_merge.lua")).read_text(encoding="utf-8")
_GLOB = re.compile(r"([*?\[\]\\])")


def merge_records(
    client: redis.Redis | RedisCluster, loser: str, winner: str, ts_ms: int, merge_id: str, retry: RetryPolicy
) -> int:
    """Fold `loser`'s consent, suppressions, caps and dedupe records into `winner`'s, as of
    the merge's event time `ts_ms`, once per `merge_id`; returns how many of the winner's
    records changed (0 for a merge folded in before)."""
    if loser == winner:
        return 0
    lt, wt = hash_tag(loser), hash_tag(winner)  # refuses an id that cannot be a hash tag

    def read() -> tuple[dict[str, Any], list[str]]:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(consent_key(loser))
        pipe.smembers(suppress_key(loser))
        pipe.hgetall(suppress_at_key(loser))
        consent, members, at = pipe.execute()
        when = {text(k): text(v) for k, v in at.items()}
        data: dict[str, Any] = {
            "consent": {text(k): text(v) for k, v in consent.items()},
            "suppress": {text(c): when.get(text(c), "") for c in members},
            "caps": [],
            "dedupes": [],
        }
        keys = [consent_key(winner), suppress_key(winner), suppress_at_key(winner), merged_key(winner)]
        pattern = _GLOB.sub(r"\\\1", lt)
        caps = sorted(text(k) for k in client.scan_iter(match=f"scrm:cap:{pattern}:*", count=1000))
        dedupes = sorted(text(k) for k in client.scan_iter(match=f"scrm:dedupe:{pattern}:*", count=1000))
        pipe = client.pipeline(transaction=False)
        for k in caps:
            pipe.zrange(k, 0, -1, withscores=True)
            pipe.pttl(k)
        for k in dedupes:
            pipe.get(k)
            pipe.pttl(k)
        got = pipe.execute() if caps or dedupes else []
        for i, k in enumerate(caps):
            members_scores, ttl = got[2 * i], got[2 * i + 1]
            data["caps"].append([[[text(m), int(s)] for m, s in members_scores], max(0, int(ttl))])
            keys.append(k.replace(lt, wt, 1))
        base = 2 * len(caps)
        for i, k in enumerate(dedupes):
            value, ttl = got[base + 2 * i], got[base + 2 * i + 1]
            if value is None or int(ttl) <= 0:  # expired between the scan and the read
                continue
            data["dedupes"].append([text(value), max(0, int(ttl))])
            keys.append(k.replace(lt, wt, 1))
        return data, keys  # a dedupe that expired is in neither: they stay aligned

    def once() -> int:
        data, keys = read()
        script = client.register_script(SCRIPT)
        return int(script(keys=keys, args=[orjson.dumps(data), str(ts_ms), merge_id]))

    return retried(retry, once, f"merge the guard records of {loser} into {winner}")
