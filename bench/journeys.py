"""Journeys benchmark: event-to-action latency on the actions topic, and full-pipeline
throughput.

Prints, from one run on this machine:

1. **latency** — live events (ts = now) are produced at ``--rate`` events/s for
   ``--seconds``; a benchmark journey sends on every ``order_paid`` (guards on: consent,
   suppression, dedupe off, caps off so every trigger becomes a send); a consumer reads
   ``scrm.actions`` and records, per action, wall clock at consumption minus the trigger
   event's time: p50 / p90 / p99 / max;
2. **throughput** — the same engine over a pre-filled topic to its end, one worker:
   ingest + features + scoring, then + journeys (the shipped ones and the benchmark one),
   events/s and the added cost per event.

Not a test: nothing is asserted; bench/RESULTS.md keeps what it printed, dated.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as base  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from rich.console import Console  # noqa: E402

from flows.app import engine  # noqa: E402
from flows.app.engine import journey_catalog, make_sinks, prepare_clickhouse  # noqa: E402
from flows.app.testing import Broker, local_servers  # noqa: E402
from flows.core.resources import config_dir  # noqa: E402
from flows.core.settings import Settings, load_settings  # noqa: E402
from flows.dataflow.build import build_flow  # noqa: E402
from flows.sources.control import RunControl  # noqa: E402
from flows.sources.kafka import KafkaEventsSource  # noqa: E402
from sinks.kafka import ensure_topics  # noqa: E402
from sinks.redis_store import RedisService  # noqa: E402
from sinks.retry import RetryPolicy  # noqa: E402

JOURNEY = """
id: bench_thanks
name: Thank every paid order (benchmark)
priority: 10
entry: {policy: every_time}
max_active: 100
trigger:
  event: {type: order_paid}
nodes:
  - {id: thanks, type: send, channel: push, template: thanks, vars: {amount: "{{trigger.props.amount}}"}}
"""


def settings_for(
    broker: Broker, topic: str, chdb: Path, redis_url: str, journeys: Path | None, **extra
) -> Settings:
    over = {
        "kafka": {"bootstrap": broker.bootstrap, "events_topic": topic, "dlq_topic": f"{topic}_dlq",
                  "actions_topic": f"{topic}_actions", "partitions": 2},
        "clickhouse": {"url": f"chdb://{chdb}", "database": f"bj_{uuid.uuid4().hex[:8]}"},
        "redis": {"url": redis_url},
        "metrics": {"port": 0},
        "source": {"kind": "kafka"},
        "journeys": {"enabled": journeys is not None, "dir": str(journeys) if journeys else None,
                     "caps": [], "dedupe_window_s": 0},
        "engine": {"progress_interval_s": 3600},
    }  # fmt: skip
    for k, v in extra.items():
        over.setdefault(k, {}).update(v)
    return load_settings(env={}, overrides=over)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def journey_folder(tmp: Path) -> Path:
    """The shipped journeys and the benchmark's own (a send on every paid order) in one folder."""
    folder = tmp / "journeys"
    folder.mkdir()
    for f in (config_dir() / "journeys").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "bench_thanks.yaml").write_text(JOURNEY)
    return folder


def latency(
    broker: Broker, chdb: Path, url: str, folder: Path, rate: float, seconds: float
) -> dict[str, float]:
    """Event-to-action on the actions topic at `rate` events/s, printed; returned as ``sent``,
    ``triggers``, ``actions`` and ``p50``/``p90``/``p99``/``max`` (ms; absent without an action)."""
    topic = broker.create_topic(f"live_{uuid.uuid4().hex[:6]}", partitions=2)
    s = settings_for(broker, topic, chdb, url, folder, source={"duration_s": seconds + 8})
    ensure_topics(s.kafka, {s.kafka.actions_topic: 2})
    lat: list[float] = []
    read: list[float] = []  # trigger ts -> the engine read it (receivedAt)
    stop = threading.Event()
    produced = {"n": 0}

    def consume() -> None:
        c = Consumer(  # reading the actions with the engine's fetch wait, as the floor does
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "bench",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": s.kafka.fetch_wait_ms,
            }
        )
        c.assign([TopicPartition(s.kafka.actions_topic, p, 0) for p in range(2)])
        while not stop.is_set():
            for m in c.consume(1000, 0.005):  # returns when full or timed out: keep it short
                if m.error() is None:
                    action = orjson.loads(m.value())
                    lat.append(time.time() - action["ts"] / 1000)
                    read.append((action["receivedAt"] - action["ts"]) / 1000)
        c.close()

    def produce() -> None:
        time.sleep(6)  # the engine starts (ClickHouse DDL, journeys, first partitions)
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = int(elapsed * rate)
            while n < due:
                pid = f"b{n % 5000}"
                ts = int(time.time() * 1000)
                etype = "order_paid" if n % 10 == 0 else "page_view"
                body = {
                    "eventId": f"e{n}",
                    "profileId": pid,
                    "type": etype,
                    "ts": ts,
                    "props": {"amount": 10.0},
                }
                p.produce(topic, orjson.dumps(body), pid.encode())
                n += 1
            p.poll(0)
            time.sleep(0.002)
        p.flush(10)
        produced["n"] = n
        print(f"produced {n:,} live events at {n / seconds:,.0f}/s (1 in 10 an order_paid: a trigger)")

    threads = [threading.Thread(target=consume), threading.Thread(target=produce)]
    for t in threads:
        t.start()
    engine.run(s, Console(file=io.StringIO()))
    stop.set()
    for t in threads:
        t.join()
    n = produced["n"]
    out: dict[str, float] = {"sent": n, "triggers": (n + 9) // 10, "actions": len(lat)}
    if lat:
        ms = [x * 1000 for x in lat]
        out |= {"p50": pct(ms, 0.5), "p90": pct(ms, 0.9), "p99": pct(ms, 0.99), "max": max(ms)}
        print(
            f"event-to-action on the actions topic over {len(ms):,} actions: p50 {pct(ms, 0.5):,.0f} ms "
            f"· p90 {pct(ms, 0.9):,.0f} ms · p99 {pct(ms, 0.99):,.0f} ms · max {max(ms):,.0f} ms"
        )
        rd = [x * 1000 for x in read]
        rest = [a - b for a, b in zip(ms, rd, strict=True)]
        print(
            f"  of which sent to read by the engine: p50 {pct(rd, 0.5):,.0f} ms · "
            f"p99 {pct(rd, 0.99):,.0f} ms; "
            f"read to on the topic: p50 {pct(rest, 0.5):,.0f} ms · p99 {pct(rest, 0.99):,.0f} ms"
        )
    return out


def pipeline_rate(
    broker: Broker, topic: str, chdb: Path, url: str, folder: Path | None, n: int, persons: bool = False
) -> float:
    """Events/s of the engine over the `n` events of `topic` to its end, one worker, in this
    process: ingest + features + scoring, journeys and guards when `folder` is given, and
    routing by person (`identity.resolve`) with `persons`."""
    s = settings_for(
        broker, topic, chdb, url, folder, kafka={"stop_at_end": True}, identity={"resolve": persons}
    )
    prepare_clickhouse(s)
    ensure_topics(s.kafka, {s.kafka.dlq_topic: 1, s.kafka.actions_topic: 2})
    catalog = None
    if folder is not None:
        catalog = journey_catalog(s, RedisService(s.redis, chdb.parent, RetryPolicy()))
        assert catalog is not None
        catalog.refresh()
    control = RunControl()
    flow = build_flow(s, KafkaEventsSource(s.kafka, control), make_sinks(s), journeys=catalog)
    return n / base.timed(flow, s, control)


def throughput(
    broker: Broker, chdb: Path, url: str, folder: Path, events: list[bytes]
) -> list[tuple[str, float]]:
    """(stage, events/s) without and with journeys over one topic, printed."""
    topic = broker.create_topic(f"tp_{uuid.uuid4().hex[:6]}", partitions=2)
    broker.produce(topic, base.keyed_by_profile(events))
    rates = [
        (label, pipeline_rate(broker, topic, chdb, url, f, len(events)))
        for label, f in (("ingest + features + scoring", None), ("+ journeys and guards", folder))
    ]
    print(f"\n{'stage (1 worker, through Kafka, ' + f'{len(events):,} events)':<60} {'events/s':>10}")
    for label, r in rates:
        print(f"{label:<60} {r:>10,.0f}")
    print(f"added cost per event of journeys: {(1 / rates[1][1] - 1 / rates[0][1]) * 1e6:.1f} µs")
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only-latency", action="store_true", help="the latency run alone")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp:
        folder = journey_folder(Path(tmp))
        with local_servers(Path(tmp)) as (broker, url):
            chdb = Path(tmp) / "ch"
            latency(broker, chdb, url, folder, args.rate, args.seconds)
            if not args.only_latency:
                throughput(broker, chdb, url, folder, base.workload(args.events, args.seed))


if __name__ == "__main__":
    main()
