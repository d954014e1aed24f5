"""Features benchmark: the cost of the default feature set, in time and in memory.

Prints, from one run on this machine:

1. events/s through Kafka on one worker with features off (the foundation's ingest) and
   on (the default ``config/features.toml``: dedupe + 49 features + Redis online store +
   ClickHouse snapshots), on the same topic, and the added cost per event in µs;
2. the added cost of the feature computation alone (no I/O): dedupe, ``ProfileFeatures.add``,
   the update with tags and RFM and the tag and segment events, in µs per event;
3. state bytes per profile for the default set, measured with tracemalloc and as the
   pickled snapshot Bytewax would write, and the projection for 1 million profiles: after
   the events alone, and after the engine's fold (events, then the update with tags and
   RFM and the tag and segment events, as the profile step does per event).

Workload: seeded synthetic customers (see bench/ingest.py), cached. Not a test.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base  # noqa: E402

from flows.app.engine import make_sinks, prepare_clickhouse  # noqa: E402
from flows.app.gcpolicy import collect_rarely  # noqa: E402
from flows.app.testing import Broker, local_servers  # noqa: E402
from flows.core.contract import Event, RawRecord  # noqa: E402
from flows.core.settings import Settings, load_settings  # noqa: E402
from flows.dataflow.build import build_flow, feature_set, make_validator  # noqa: E402
from flows.dataflow.profile import ProfileState, new_state  # noqa: E402
from flows.features.plan import FeaturePlan  # noqa: E402
from flows.features.rfm import RfmSketch  # noqa: E402
from flows.sources.control import RunControl  # noqa: E402
from flows.sources.kafka import KafkaEventsSource  # noqa: E402
from sinks.kafka import ensure_topics  # noqa: E402


def settings_for(broker: Broker, topic: str, chdb: Path, redis_url: str, features: bool) -> Settings:
    return load_settings(
        env={},
        overrides={
            "kafka": {
                "bootstrap": broker.bootstrap,
                "events_topic": topic,
                "stop_at_end": True,
                "dlq_topic": f"{topic}_dlq",
            },
            "clickhouse": {"url": f"chdb://{chdb}", "database": f"bf_{uuid.uuid4().hex[:8]}"},
            "redis": {"url": redis_url},
            "metrics": {"port": 0},
            "source": {"kind": "kafka"},
            "features": {"enabled": features},
        },
    )


def run_once(s: Settings) -> float:
    prepare_clickhouse(s)
    ensure_topics(s.kafka, {s.kafka.dlq_topic: 1})
    control = RunControl()
    flow = build_flow(s, KafkaEventsSource(s.kafka, control), make_sinks(s))
    return base.timed(flow, s, control)


def parsed_events(raw: list[bytes]) -> list[Event]:
    v = make_validator(load_settings(env={}))
    out = [v.parse(RawRecord(b, "bench"), 1_900_000_000_000) for b in raw]
    return [e for e in out if type(e) is Event]


def compute_only(events: list[Event], s: Settings) -> float:
    """µs per event of the profile step's work without I/O (`fold`), under the engine's
    garbage-collector policy (`flows/gcpolicy.py`)."""
    plan = FeaturePlan(feature_set(s))  # type: ignore[arg-type]  # features are on in this bench
    states: dict[str, ProfileState] = {}
    with collect_rarely(s.engine.gc_young_threshold):
        started = time.perf_counter()
        fold(states, events, plan, RfmSketch(), snapshot_ms(s))
        return (time.perf_counter() - started) / len(events) * 1e6


def snapshot_ms(s: Settings) -> int:
    """How often the engine reads a profile's whole map for a `features` row (event time)."""
    return int(s.features.snapshot_interval_s * 1000)


def fold(
    states: dict[str, ProfileState], events: list[Event], plan: FeaturePlan, sketch: RfmSketch, every_ms: int
) -> None:
    """The profile step's work per event without I/O: dedupe and features, then the update
    (changed features, tags, RFM, segment; the whole map every `every_ms` of event time)
    and the tag and segment events it implies."""
    for e in events:
        st = states.get(e.profile_id)
        if st is None:
            st = states[e.profile_id] = new_state(plan, 86_400_000, 10_000, 3_600_000, sketch=sketch)
        st.ingest([e])
        upd = st.update(e.profile_id, st.as_of(e.ts_ms), every_ms, 0)
        if upd is not None and (upd.tags is not None or upd.segment is not None):
            st.change_events(upd)


def memory(raw: list[bytes], s: Settings, update: bool = False) -> tuple[int, float, float]:
    """(profiles, tracemalloc bytes per profile, pickled bytes per profile) after the events
    alone, or with `update` after the engine's fold (`fold`: tags, RFM, segments too).

    Each event is parsed inside the trace and dropped after its fold, as in the engine: what
    a state keeps of an event (its id, its times) is counted, the rest of the event is not."""
    plan = FeaturePlan(feature_set(s))  # type: ignore[arg-type]  # features are on in this bench
    sketch = RfmSketch()
    v = make_validator(load_settings(env={}))
    for b in raw[:100]:  # the parser's one-off allocations stay out of the figure
        v.parse(RawRecord(b, "bench"), 1_900_000_000_000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    states: dict[str, ProfileState] = {}
    for b in raw:
        e = v.parse(RawRecord(b, "bench"), 1_900_000_000_000)
        if type(e) is not Event:
            continue
        if update:
            fold(states, [e], plan, sketch, snapshot_ms(s))
        else:
            st = states.get(e.profile_id)
            if st is None:
                st = states[e.profile_id] = new_state(plan, 86_400_000, 10_000, 3_600_000, sketch=sketch)
            st.ingest([e])
    del e
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    pickled = sum(len(pickle.dumps(st)) for st in states.values())
    n = len(states)
    return n, (after - before) / n, pickled / n


def end_to_end(raw: list[bytes], tmp: Path, broker: Broker, url: str) -> tuple[float, float]:
    """Events/s through Kafka, one worker, features off and on, over one topic (after a warm-up)."""
    warm = broker.create_topic(f"warm_{uuid.uuid4().hex[:6]}", partitions=2)
    broker.produce(warm, base.keyed_by_profile(raw[:5000]))
    run_once(settings_for(broker, warm, tmp / "ch", url, True))
    topic = broker.create_topic(f"feat_{uuid.uuid4().hex[:6]}", partitions=2)
    broker.produce(topic, base.keyed_by_profile(raw))
    off = len(raw) / run_once(settings_for(broker, topic, tmp / "ch", url, False))
    on = len(raw) / run_once(settings_for(broker, topic, tmp / "ch", url, True))
    return off, on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    raw = base.workload(args.events, args.seed)
    events = parsed_events(raw)
    s0 = load_settings(env={})
    print(f"feature set: {len(feature_set(s0).features)} features from config/features.toml")  # type: ignore[union-attr]

    us = compute_only(events, s0)
    print(f"compute only (dedupe + features + values(), no I/O): {us:.1f} µs/event")
    for update, what in ((False, "the events alone"), (True, "the engine's fold (+ tags, RFM, segments)")):
        n, traced, pickled = memory(raw, s0, update)
        print(
            f"state per profile after {len(events):,} events over {n:,} profiles, {what}: "
            f"{traced:,.0f} B in memory (tracemalloc), {pickled:,.0f} B pickled; "
            f"1 million profiles ≈ {traced * 1e6 / 2**30:.2f} GiB in memory, "
            f"{pickled * 1e6 / 2**30:.2f} GiB per full snapshot"
        )

    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp, local_servers(Path(tmp)) as (broker, url):
        off, on = end_to_end(raw, Path(tmp), broker, url)
    print()
    print(f"{'stage (1 worker, through Kafka)':<70} {'events/s':>10}")
    print(f"{'ingest only (features off)':<70} {off:>10,.0f}")
    print(f"{'ingest + default features + Redis store + ClickHouse snapshots':<70} {on:>10,.0f}")
    print(f"added cost per event: {(1 / on - 1 / off) * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
