"""Scale benchmark: does the cost per event grow with the number of customers held?

Prints, from one run on this machine, for each profile count (10,000 and 1,000,000 by
default): the time to fold the same measured stream of events into the profile state
(dedupe + 49 features + the update with tags and RFM, no I/O, under the engine's GC
policy), after every profile was first given one event, and the engine's resident memory
then. The measured stream is the seeded workload of `bench/ingest.py` with each customer
mapped onto one of the N profiles held, so both runs do the same work per event; only the
number of profiles in memory differs. The ratio of the two rates is the figure to read.

Not a test: nothing is asserted; bench/RESULTS.md keeps what it printed, dated.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base  # noqa: E402
from features import fold, parsed_events, snapshot_ms  # noqa: E402

from flows.app.gcpolicy import collect_rarely  # noqa: E402
from flows.core.contract import Event  # noqa: E402
from flows.core.settings import load_settings  # noqa: E402
from flows.dataflow.build import feature_set  # noqa: E402
from flows.dataflow.profile import ProfileState  # noqa: E402
from flows.features.plan import FeaturePlan  # noqa: E402
from flows.features.rfm import RfmSketch  # noqa: E402


def run(profiles: int, stream: list[Event], warm: list[Event], gc_young: int) -> tuple[float, float]:
    """(µs per event of the measured stream, max RSS in GiB) with `profiles` held."""
    settings = load_settings(env={})
    plan = FeaturePlan(feature_set(settings))  # type: ignore[arg-type]
    every = snapshot_ms(settings)
    sketch = RfmSketch()
    states: dict[str, ProfileState] = {}
    first = [warm[i % len(warm)]._replace(profile_id=f"s{i}", event_id=f"w{i}") for i in range(profiles)]
    ids = {pid: n for n, pid in enumerate(sorted({e.profile_id for e in stream}))}
    measured = [e._replace(profile_id=f"s{ids[e.profile_id] * 7919 % profiles}") for e in stream]
    with collect_rarely(gc_young):
        fold(states, first, plan, sketch, every)
        started = time.perf_counter()
        fold(states, measured, plan, sketch, every)
        took = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return took / len(measured) * 1e6, rss


def compare(small: int, large: int, events: list[Event], progress=print) -> dict[int, tuple[float, float]]:
    """Profiles held -> (events/s of the measured stream, max RSS in GiB) for `small` and
    `large`, each line passed to `progress` as it is measured."""
    warm = [e for e in events if e.type in ("page_view", "session_start")] or events
    gc_young = load_settings(env={}).engine.gc_young_threshold
    out = {}
    for n in (small, large):
        us, rss = run(n, events, warm, gc_young)
        out[n] = (1e6 / us, rss)
        progress(
            f"{n:>10,} profiles held: {us:6.1f} µs/event ({1e6 / us:,.0f} events/s), max RSS {rss:.2f} GiB"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10_000, help="profiles held in the first run")
    ap.add_argument("--large", type=int, default=1_000_000, help="profiles held in the second run")
    ap.add_argument("--events", type=int, default=200_000, help="the measured stream")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    events = parsed_events(base.workload(args.events, args.seed))
    rates = compare(args.small, args.large, events)
    ratio = rates[args.large][0] / rates[args.small][0]
    print(f"events/s with {args.large:,} profiles / with {args.small:,}: {ratio:.2f}")


if __name__ == "__main__":
    main()
