"""What the engine's state is made of: a breakdown of a recovery store, and of Valkey's keys.

The recovery store holds every stateful step's latest snapshots, so it is the engine's
state as it stood at its last snapshot. For the per-profile step this unpickles the newest
snapshot of each profile and sums the pickled size of each part: the eventId dedupe
memory, the feature windows (by aggregation), the scoring memory, each part of the
journey state (running instances, entry marks, absence watches, the last send per
template, learned dates), and the rest (tags, RFM, segment). Other steps (the learners,
the input offsets, the sinks) are listed by their snapshot bytes. With ``--redis URL`` it
also counts Valkey's keys by pattern (profile ids replaced by ``*``) with their memory.

Run it on a soak's data (``bench/soak.py --keep DIR``) at two times to see which part
grows: ``python bench/state_size.py DIR/recovery [--redis redis://...]``. Not a test.
"""

from __future__ import annotations

import argparse
import collections
import pickle
import re
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.core.settings import load_settings  # noqa: E402
from flows.dataflow.build import feature_set  # noqa: E402
from flows.features.plan import FeaturePlan  # noqa: E402
from flows.features.rfm import RfmSketch  # noqa: E402

PROFILE_STEP = "scrm.ingest.profile"


def _size(obj: Any) -> int:
    return len(pickle.dumps(obj, protocol=5))


def _rows(recovery: Path, sql: str) -> Iterator[tuple[Any, ...]]:
    """The rows of `sql` over every partition file, read-only."""
    for part in sorted(recovery.glob("*.sqlite3")):
        con = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
        try:
            yield from con.execute(sql).fetchall()
        finally:
            con.close()


def latest_snapshots(recovery: Path) -> dict[tuple[str, str], bytes | None]:
    """(step id, state key) -> the newest snapshot's bytes, over every partition file."""
    sql = (
        "SELECT step_id, state_key, ser_change FROM snaps s WHERE snap_epoch ="
        " (SELECT MAX(snap_epoch) FROM snaps t WHERE t.step_id = s.step_id AND t.state_key = s.state_key)"
    )
    return {(step, key): ser for step, key, ser in _rows(recovery, sql)}


def store_rows(recovery: Path) -> dict[str, int]:
    """Snapshot rows per step over all partitions (every epoch still kept, not only the newest)."""
    rows: collections.Counter[str] = collections.Counter()
    for step, n in _rows(recovery, "SELECT step_id, COUNT(*) FROM snaps GROUP BY step_id"):
        rows[step] += n
    return dict(rows)


def profile_parts(state: Any) -> dict[str, int]:
    """Pickled bytes of each part of one `flows.dataflow.profile.ProfileState`."""
    parts = {"dedupe": _size(state.seen), "total": _size(state)}
    feats = state.features
    if feats is not None:
        parts["features"] = _size(feats)
        plan = feats.plan
        for feature, st in feats.states().items():
            name = f"features.{plan.features[plan.index[feature]].agg}"
            parts[name] = parts.get(name, 0) + _size(st)
    if state.scoring is not None:
        parts["scoring"] = _size(state.scoring)
    js = state.journeys
    if js is not None:
        parts["journeys"] = _size(js)
        for attr in ("instances", "entries", "watches", "sent_by", "dates", "journey_tags"):
            parts[f"journeys.{attr}"] = _size(getattr(js, attr))
    parts["other"] = parts["total"] - sum(
        parts.get(k, 0) for k in ("dedupe", "features", "scoring", "journeys")
    )
    return parts


def counts(state: Any) -> dict[str, int]:
    """Entries in the parts that could grow without a bound in the code."""
    js = state.journeys
    out = {"dedupe ids": len(state.seen._ids)}
    if js is not None:
        out |= {
            "instances": len(js.instances),
            "entries": len(js.entries),
            "watches": len(js.watches),
            "sent_by": len(js.sent_by),
            "dates": len(js.dates),
        }
    return out


def breakdown(recovery: Path) -> dict[str, Any]:
    """Totals per part over all profiles, entry counts, and bytes per other step."""
    fs = feature_set(load_settings())
    plan = FeaturePlan(fs) if fs is not None else None
    sketch = RfmSketch()
    parts: collections.Counter[str] = collections.Counter()
    n_counts: collections.Counter[str] = collections.Counter()
    max_counts: dict[str, int] = {}
    steps: collections.Counter[str] = collections.Counter()
    profiles = 0
    for (step, _key), ser in latest_snapshots(recovery).items():
        if ser is None:
            continue
        if step != PROFILE_STEP:
            steps[step] += len(ser)
            continue
        raw = pickle.loads(ser)
        if raw is None:
            continue
        profiles += 1
        state = pickle.loads(raw)
        state.bind(plan, sketch)
        parts.update(profile_parts(state))
        for k, v in counts(state).items():
            n_counts[k] += v
            max_counts[k] = max(max_counts.get(k, 0), v)
    return {
        "profiles": profiles,
        "parts": dict(parts),
        "counts": dict(n_counts),
        "max_counts": max_counts,
        "steps": dict(steps),
        "rows": store_rows(recovery),
    }


_ID = re.compile(r"\{[^}]*\}|(?<=:)[0-9a-f]{16,}|(?<=:)(p|c|u)[-_]?\d+\b")


def redis_keys(url: str, sample: int = 200) -> dict[str, tuple[int, int]]:
    """Key pattern -> (keys, estimated bytes: mean MEMORY USAGE of a sample x keys)."""
    import redis

    r = redis.Redis.from_url(url)
    keys: dict[str, list[bytes]] = collections.defaultdict(list)
    for k in r.scan_iter(count=1000):
        keys[_ID.sub("*", k.decode(errors="replace"))].append(k)
    out = {}
    for pattern, ks in keys.items():
        probe = ks[:: max(1, len(ks) // sample)][:sample]
        mem = [r.memory_usage(k) or 0 for k in probe]
        out[pattern] = (len(ks), int(sum(mem) / max(1, len(mem)) * len(ks)))
    return out


def copy_store(recovery: Path, to: Path) -> None:
    """A consistent copy of a recovery store that a running engine is writing (SQLite's backup)."""
    to.mkdir(parents=True, exist_ok=True)
    for part in sorted(recovery.glob("*.sqlite3")):
        src = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
        dst = sqlite3.connect(to / part.name)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()


def compare(before: dict[str, Any], after: dict[str, Any], labels: tuple[str, str]) -> str:
    """Two breakdowns side by side, per profile and in total, with the change."""
    nb, na = max(1, before["profiles"]), max(1, after["profiles"])
    a, b = labels
    lines = [
        f"profiles: {before['profiles']:,} at {a}, {after['profiles']:,} at {b}",
        f"{'part (pickled)':<24}{'B/prof ' + a:>14}{'B/prof ' + b:>14}"
        f"{'MiB ' + a:>10}{'MiB ' + b:>10}{'change':>9}",
    ]
    for k in sorted(after["parts"], key=lambda k: -after["parts"][k]):
        x, y = before["parts"].get(k, 0), after["parts"][k]
        ch = f"{(y - x) / x * 100:+.0f}%" if x else "new"
        lines.append(f"{k:<24}{x / nb:>14,.0f}{y / na:>14,.0f}{x / 2**20:>10.2f}{y / 2**20:>10.2f}{ch:>9}")
    lines.append(f"{'entries':<24}{'total ' + a:>14}{'total ' + b:>14}{'max ' + a:>10}{'max ' + b:>10}")
    for k in after["counts"]:
        lines.append(
            f"{k:<24}{before['counts'].get(k, 0):>14,}{after['counts'][k]:>14,}"
            f"{before['max_counts'].get(k, 0):>10,}{after['max_counts'][k]:>10,}"
        )
    for k in sorted(set(before["steps"]) | set(after["steps"])):
        x, y = before["steps"].get(k, 0), after["steps"].get(k, 0)
        if x or y:
            lines.append(f"step {k:<35}{x / 1024:>10.1f} KiB {y / 1024:>10.1f} KiB")
    lines.append(
        "snapshot rows kept: "
        + ", ".join(f"{k} {before['rows'].get(k, 0):,} -> {v:,}" for k, v in sorted(after["rows"].items()))
    )
    return "\n".join(lines)


def compare_redis(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], labels: tuple[str, str]
) -> str:
    a, b = labels
    lines = [
        f"{'valkey key pattern':<44}{'keys ' + a:>12}{'keys ' + b:>12}{'~MiB ' + a:>10}{'~MiB ' + b:>10}"
    ]
    for k in sorted(set(before) | set(after), key=lambda k: -after.get(k, (0, 0))[1]):
        (n0, m0), (n1, m1) = before.get(k, (0, 0)), after.get(k, (0, 0))
        lines.append(f"{k[:43]:<44}{n0:>12,}{n1:>12,}{m0 / 2**20:>10.2f}{m1 / 2**20:>10.2f}")
    return "\n".join(lines)


def report(b: dict[str, Any]) -> str:
    n = max(1, b["profiles"])
    lines = [f"profiles: {b['profiles']:,}", f"{'part':<28}{'total MiB':>11}{'B/profile':>11}"]
    for k, v in sorted(b["parts"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{k:<28}{v / 2**20:>11.2f}{v / n:>11.0f}")
    lines.append(f"{'entries':<28}{'total':>11}{'max':>11}")
    for k, v in b["counts"].items():
        lines.append(f"{k:<28}{v:>11,}{b['max_counts'][k]:>11,}")
    lines.append(f"{'other step':<40}{'KiB':>10}")
    for k, v in sorted(b["steps"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{k:<40}{v / 1024:>10.1f}")
    lines.append("snapshot rows kept: " + ", ".join(f"{k} {v:,}" for k, v in sorted(b["rows"].items())))
    return "\n".join(lines)


def redis_report(keys: dict[str, tuple[int, int]]) -> str:
    lines = [f"{'valkey key pattern':<48}{'keys':>10}{'~MiB':>9}"]
    for k, (n, mem) in sorted(keys.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"{k[:47]:<48}{n:>10,}{mem / 2**20:>9.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recovery", type=Path, help="a recovery directory (the part-*.sqlite3 files)")
    ap.add_argument("--redis", help="also count this Valkey/Redis server's keys by pattern")
    args = ap.parse_args()
    print(report(breakdown(args.recovery)))
    if args.redis:
        print(redis_report(redis_keys(args.redis)))


if __name__ == "__main__":
    main()
