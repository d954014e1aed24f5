"""Ingest benchmark: Kafka -> validate -> dedupe -> ClickHouse, against a pass-through baseline.

Prints, from one run on this machine:

Features are off here (this is the foundation's ingest path); ``bench/features.py``
measures what the default feature set adds.

1. **baseline**: Kafka -> orjson.loads -> key by profileId -> stateful count -> nothing
   (Bytewax's own cost plus JSON decoding; the ceiling for anything we add);
2. **ingest, 1 worker** and **ingest, 2 workers**: the engine's real flow (validation,
   PII, eventId dedupe, dead letters, ClickHouse inserts into chDB), events/s from the
   first record read to the last row flushed;
3. **event-to-ClickHouse latency** at a fixed rate: the engine runs live (``scrm run
   --source kafka``, its own process) while this script produces at ``--rate`` events/s
   with ``ts`` = the send time; p50/p99/max of ``inserted_at - ts`` per row, computed by
   ClickHouse itself, split at ``ingested_at`` (when the engine read the event) into
   sent-to-read and read-to-stored;
4. **transport floor**: the same producer and broker with a bare consumer in place of the
   engine, which only reads and stamps: the part of the latency that is not the engine's.

The workload is seeded synthetic customers, cached under ``bench/.cache``. Not a test:
nothing here asserts a speed. Run with ``make bench`` or ``python bench/ingest.py -h``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.app.engine import Cluster, make_sinks, prepare_clickhouse, run_flow  # noqa: E402
from flows.app.testing import Broker, EngineProcess  # noqa: E402
from flows.core.settings import Settings, load_settings  # noqa: E402
from flows.dataflow.build import build_flow  # noqa: E402
from flows.sources.control import RunControl  # noqa: E402
from flows.sources.kafka import KafkaEventsSource  # noqa: E402
from flows.synthetic.customers import SyntheticConfig, SyntheticCustomers  # noqa: E402
from sinks.clickhouse import connect  # noqa: E402
from sinks.kafka import ensure_topics  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


def machine() -> str:
    """The line every benchmark prints first: figures are read against the machine."""
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}"
    )


def workload(n: int, seed: int) -> list[bytes]:
    """n seeded synthetic events (1 % late, 0.5 % malformed, 0.5 % repeated), cached.

    Taken after n/2 warm-up events, so the stream is in steady state (customers mostly
    signed up already) rather than a burst of first-time signups.
    """
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"events-{seed}-{n}.jsonl"
    if not path.exists():
        gen = SyntheticCustomers(
            SyntheticConfig(
                profiles=20_000,
                seed=seed,
                late_share=0.01,
                malformed_share=0.005,
                duplicate_share=0.005,
            )
        )
        start = 1_790_000_000_000
        gen.take(n // 2, start, 5)  # steady state: most customers have signed up already
        path.write_bytes(b"\n".join(gen.take(n, start + n // 2 * 5, 5)) + b"\n")
    return [line for line in path.read_bytes().splitlines() if line]


class _Null(StatelessSinkPartition[object]):
    def write_batch(self, items: list[object]) -> None:
        pass


class NullSink(DynamicSink[object]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Null:
        return _Null()


class _Count(StatefulBatchLogic[object, int, int]):
    def __init__(self, n: int | None) -> None:
        self.n = n or 0

    def on_batch(self, values: list[object]) -> tuple[list[int], bool]:
        self.n += len(values)
        return [], False

    def snapshot(self) -> int:
        return self.n


def _profile(obj: object) -> str:
    return obj.get("profileId") or "" if isinstance(obj, dict) else ""


def baseline_flow(settings: Settings, control: RunControl) -> Dataflow:
    flow = Dataflow("baseline")
    raw = op.input("in", flow, KafkaEventsSource(settings.kafka, control))
    objs = op.map("loads", raw, lambda r: _safe_loads(r.value))
    keyed = op.key_on("key", objs, _profile)
    counts = op.stateful_batch("count", keyed, _Count)
    op.output("out", counts, NullSink())
    return flow


def _safe_loads(value: bytes | None) -> object:
    try:
        return orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None


def timed(flow: Dataflow, settings: Settings, control: RunControl) -> float:
    """Seconds `flow` ran from its first record read (`control` is its source's) to its
    end: a rate over it leaves out the flow's start, which weighs most on the shortest
    runs (the pass-through baseline, the replay with features off)."""
    started = time.monotonic()  # RunControl's clock
    run_flow(flow, settings, Cluster())
    return time.monotonic() - control.reading_since(started)


def ingest_run(broker: Broker, topic: str, chdb: Path, workers: int) -> tuple[float, int, int]:
    """Run the engine's flow over `topic` to its end; (seconds, events stored, dead letters)."""
    db = f"bench_w{workers}_{uuid.uuid4().hex[:6]}"
    s = settings_for(broker, topic, chdb, workers, db)
    prepare_clickhouse(s)
    ensure_topics(s.kafka, {s.kafka.dlq_topic: 1})
    control = RunControl()
    flow = build_flow(s, KafkaEventsSource(s.kafka, control), make_sinks(s))
    seconds = timed(flow, s, control)
    client = connect(s.clickhouse)
    stored = client.command(f"SELECT count() FROM {db}.events FINAL")
    dead = client.command(f"SELECT count() FROM {db}.dead_letters FINAL")
    client.close()
    return seconds, stored, dead


def settings_for(broker: Broker, topic: str, chdb: Path, workers: int, db: str) -> Settings:
    return load_settings(
        env={},
        overrides={
            "engine": {"workers": workers},
            "kafka": {
                "bootstrap": broker.bootstrap,
                "events_topic": topic,
                "stop_at_end": True,
                "dlq_topic": f"{topic}_dlq",
            },
            "clickhouse": {"url": f"chdb://{chdb}", "database": db},
            "metrics": {"port": 0},
            "source": {"kind": "kafka"},
            "features": {"enabled": False},  # the foundation's path; bench/features.py adds them
        },
    )


def keyed_by_profile(events: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    """Messages keyed by profileId, as producers send them (so a profile's events share a
    partition and the partitions are even); an event without one (malformed) goes unkeyed."""
    out: list[tuple[bytes | None, bytes]] = []
    for v in events:
        try:
            pid = orjson.loads(v).get("profileId")
        except (orjson.JSONDecodeError, AttributeError):
            pid = None
        out.append((pid.encode() if isinstance(pid, str) else None, v))
    return out


def fill_topic(broker: Broker, events: list[bytes], prefix: str = "bench") -> str:
    """A new 2-partition topic holding `events` (every one acknowledged)."""
    topic = broker.create_topic(f"{prefix}_{uuid.uuid4().hex[:8]}", partitions=2)
    t0 = time.perf_counter()
    broker.produce(topic, keyed_by_profile(events))
    produce_s = time.perf_counter() - t0
    print(
        f"produced {len(events):,} events to {topic} (2 partitions) in {produce_s:.1f}s "
        f"({len(events) / produce_s:,.0f}/s)"
    )
    return topic


def passthrough(broker: Broker, topic: str, chdb: Path, n: int) -> float:
    """Events/s of the pass-through baseline over the `n` events of `topic`, 1 worker."""
    s = settings_for(broker, topic, chdb, 1, "bench_base")
    control = RunControl()
    return n / timed(baseline_flow(s, control), s, control)


def warm_up(broker: Broker, events: list[bytes], chdb: Path) -> None:
    """The ingest flow over a small topic: one-time imports and connections stay out of the figures."""
    warm = broker.create_topic(f"warm_{uuid.uuid4().hex[:8]}", partitions=2)
    broker.produce(warm, keyed_by_profile(events[:5000]))
    ingest_run(broker, warm, chdb, 1)


def throughput(broker: Broker, events: list[bytes], chdb: Path) -> dict[str, float]:
    """Events/s of the baseline and the ingest path on 1 and 2 workers and 2 processes, printed;
    returned under the keys ``baseline``, ``ingest_w1``, ``ingest_w2``, ``ingest_p2``."""
    warm_up(broker, events, chdb)
    topic = fill_topic(broker, events)
    rates = {"baseline": passthrough(broker, topic, chdb, len(events))}
    rows = [("baseline: Kafka -> loads -> key -> count, 1 worker", rates["baseline"])]
    for workers in (1, 2):
        seconds, stored, dead = ingest_run(broker, topic, chdb, workers)
        rates[f"ingest_w{workers}"] = len(events) / seconds
        rows.append(
            (
                f"ingest: Kafka -> validate/PII/dedupe -> ClickHouse, {workers} worker(s) "
                f"[{stored:,} events + {dead:,} dead letters stored]",
                len(events) / seconds,
            )
        )
    two = cluster_run(broker, topic, processes=2)
    rates["ingest_p2"] = two.rate
    rows.append(
        (f"ingest: same flow, 2 processes x 1 worker on loopback ({two.records:,} records)", two.rate)
    )
    print()
    print(f"{'stage':<100} {'events/s':>10}")
    for name, rate in rows:
        print(f"{name:<100} {rate:>10,.0f}")
    print(f"ingest / baseline (1 worker): {rows[1][1] / rows[0][1]:.2f}")
    return rates


def scrm_env(
    broker: Broker, topic: str, data: Path, features: bool = False, redis_url: str | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRM_")}
    env.update(
        {
            "SCRM_KAFKA__BOOTSTRAP": broker.bootstrap,
            "SCRM_KAFKA__EVENTS_TOPIC": topic,
            "SCRM_KAFKA__DLQ_TOPIC": f"{topic}_dlq",
            "SCRM_ENGINE__DATA_DIR": str(data),
            "SCRM_CLICKHOUSE__URL": f"chdb://{data}/clickhouse",
            "SCRM_METRICS__PORT": "0",
            "SCRM_FEATURES__ENABLED": "true" if features else "false",
            "SCRM_ENGINE__PROGRESS_INTERVAL_S": "5",
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",
        }
    )
    if redis_url is not None:  # processes of one cluster share one Redis (caps, catalog, models)
        env["SCRM_REDIS__URL"] = redis_url
    return env


@dataclass(frozen=True)
class ClusterRun:
    """What `cluster_run` measured."""

    records: int  # read by all the processes
    seconds: float  # the slowest process's flow time
    cores: float  # the machine's busy cores over the processes' flow time (everything on it)

    @property
    def rate(self) -> float:
        return self.records / self.seconds


SUMMARY = re.compile(r"([\d,]+) records in ([\d.]+)s")


class BusyCores:
    """The whole machine's busy cores, sampled from /proc/stat every `every_s` in a thread,
    so the share of a window read afterwards (a process's flow time) is known."""

    def __init__(self, every_s: float = 0.25) -> None:
        self._every_s = every_s
        self._samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy-cores", daemon=True)
        self._thread.start()

    @staticmethod
    def _busy_ticks() -> int:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f) - f[3] - f[4]  # all but idle and iowait

    def _run(self) -> None:
        while not self._stop.is_set():
            self._samples.append((time.monotonic(), self._busy_ticks()))
            self._stop.wait(self._every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> float:
        """Busy cores on average from `start` to `end` (monotonic), from the samples nearest
        inside the window."""
        inside = [s for s in self._samples if start <= s[0] <= end] or self._samples[-2:]
        (t0, b0), (t1, b1) = inside[0], inside[-1]
        return (b1 - b0) / os.sysconf("SC_CLK_TCK") / max(t1 - t0, 1e-9)


def cluster_run(
    broker: Broker, topic: str, processes: int, features: bool = False, redis_url: str | None = None
) -> ClusterRun:
    """`scrm run -i I -a ...` in `processes` processes over `topic` to its end (the ingest
    path; with `features`, the full pipeline on the shipped defaults).

    Counts and times come from each process's own summary line (from its first record read
    to the end of its flow: Valkey start, DDL and the processes connecting to each other
    are not counted); the busy cores are the machine's over that time, which ends when the
    summary line is printed. Each process has its own chDB path (chDB
    opens a path in one process at a time). One process is a plain `scrm run`, measured
    the same way: the baseline of the scale-out.
    """
    from flows.app.testing import free_port

    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    data = Path(tempfile.mkdtemp(prefix="scrm-bench-cluster-"))
    busy = BusyCores()
    procs = []
    for i in range(processes):
        env = scrm_env(broker, topic, data / f"p{i}", features, redis_url)
        env["SCRM_KAFKA__STOP_AT_END"] = "true"
        cmd = [sys.executable, "-m", "flows.app.cli", "run", "--source", "kafka"]
        if processes > 1:
            cmd += ["-i", str(i), "-a", addresses]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    ended: dict[int, float] = {}  # process -> when its summary line came
    outs: dict[int, list[str]] = {i: [] for i in range(processes)}

    def read(i: int, stream: Any) -> None:
        for line in stream:
            outs[i].append(line)
            if i not in ended and SUMMARY.search(line):
                ended[i] = time.monotonic()

    readers = [threading.Thread(target=read, args=(i, p.stdout), daemon=True) for i, p in enumerate(procs)]
    for r in readers:
        r.start()
    total, slowest, window = 0, 0.0, (float("inf"), 0.0)
    try:
        for i, p in enumerate(procs):
            p.wait(timeout=600)
            readers[i].join(timeout=10)
            out = "".join(outs[i])
            m = SUMMARY.search(out)
            if p.returncode != 0 or m is None:
                raise RuntimeError(f"cluster process failed:\n{out[-2000:]}")
            total += int(m.group(1).replace(",", ""))
            seconds = float(m.group(2))
            slowest = max(slowest, seconds)
            window = (min(window[0], ended[i] - seconds), max(window[1], ended[i]))
    finally:
        busy.stop()
        shutil.rmtree(data, ignore_errors=True)  # each process's chDB and Valkey data
    return ClusterRun(total, slowest, busy.between(*window))


def produce_at_rate(
    broker: Broker, topic: str, rate: int, seconds: float, linger_ms: float = 5.0, seed: int = 7
) -> int:
    """Send `rate` events/s for `seconds` with ``ts`` = the send time; returns how many.

    The events are generated before the clock starts, with a marker where ``ts`` goes, so
    the measuring producer does not take the engine's CPU (this machine has two cores):
    at send time only the marker is replaced by the send time.
    """
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": linger_ms, "enable.idempotence": True})
    gen = SyntheticCustomers(SyntheticConfig(profiles=20_000, seed=seed + 1))
    marker = b"4102444800000"  # 2100-01-01, never sent
    values = [gen.next_event(int(marker)) for _ in range(int(rate * seconds))]
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds and sent < len(values):
        due = min(int(elapsed * rate), len(values)) - sent
        now = str(int(time.time() * 1000)).encode()
        for value in values[sent : sent + max(due, 0)]:
            p.produce(topic, value.replace(marker, now, 1))
        sent += max(due, 0)
        p.poll(0)
        time.sleep(0.002)
    p.flush(30)
    return sent


_PROBE = """
import re, sys, time
from confluent_kafka import Consumer, TopicPartition
boot, topic, parts, n, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
c = Consumer({"bootstrap.servers": boot, "group.id": "probe", "enable.auto.commit": False,
              "fetch.wait.max.ms": int(wait)})
c.assign([TopicPartition(topic, i, -2) for i in range(parts)])
ts = re.compile(rb'"ts":\\s*(\\d+)')
lags = []
last = deadline = time.time() + 60 + n / 1000  # until 5 s without a record once reading
while len(lags) < n and time.time() < min(deadline, last + 5):
    msgs = c.consume(1000, 0.001)
    now = int(time.time() * 1000)
    lags.extend(now - int(ts.search(m.value()).group(1)) for m in msgs if m.error() is None)
    if msgs:
        last = time.time()
lags.sort()
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else -1
print(f"{len(lags)} {q(0.5)} {q(0.99)} {lags[-1] if lags else -1}")
"""


def transport_floor(
    broker: Broker, rate: int, seconds: float, linger_ms: float = 5.0, seed: int = 7
) -> dict[str, int]:
    """The latency run with a bare consumer in place of the engine: producer + broker + poll.

    What the engine's freshness cannot beat on this machine: the same producer, the same
    in-memory broker and a consumer that only reads and stamps (with the engine's
    ``kafka.fetch_wait_ms``), with no engine running.
    Printed, and returned as ``sent``, ``read``, ``p50``, ``p99``, ``max`` (ms).
    """
    topic = broker.create_topic(f"probe_{uuid.uuid4().hex[:8]}", partitions=2)
    n = int(rate * seconds)
    probe = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _PROBE,
            broker.bootstrap,
            topic,
            "2",
            str(n),
            str(load_settings(env={}).kafka.fetch_wait_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    sent = produce_at_rate(broker, topic, rate, seconds, linger_ms, seed)
    read, p50, p99, mx = (int(x) for x in probe.communicate(timeout=120)[0].split())
    print()
    print(
        f"transport floor at {rate:,} events/s for {seconds:g}s, no engine ({sent:,} sent, "
        f"{read:,} read by a bare consumer): p50 {p50:,} ms, p99 {p99:,} ms, max {mx:,} ms"
    )
    return {"sent": sent, "read": read, "p50": p50, "p99": p99, "max": mx}


def latency(args: argparse.Namespace, broker: Broker) -> None:
    topic = broker.create_topic(f"lat_{uuid.uuid4().hex[:8]}", partitions=2)
    data = Path(tempfile.mkdtemp(prefix="scrm-bench-"))
    env = scrm_env(broker, topic, data)
    if args.flush_interval_s is not None:
        env["SCRM_CLICKHOUSE__FLUSH_INTERVAL_S"] = str(args.flush_interval_s)
    engine = EngineProcess(env)
    engine.wait_running()  # Valkey, DDL, partitions
    sent = produce_at_rate(broker, topic, args.rate, args.seconds, args.linger_ms, args.seed)
    time.sleep(3)  # let the last batches land
    engine.interrupt(120)
    out = engine.output()
    q = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.app.cli",
            "query",
            "--format",
            "json",
            "SELECT count() AS n, quantiles(0.5, 0.99)(dateDiff('millisecond', ts, inserted_at)) AS q, "
            "max(dateDiff('millisecond', ts, inserted_at)) AS mx, "
            "quantiles(0.5, 0.99)(dateDiff('millisecond', ts, ingested_at)) AS read, "
            "quantiles(0.5, 0.99)(dateDiff('millisecond', ingested_at, inserted_at)) AS stored "
            "FROM scrm.events FINAL "
            "WHERE ts >= now64(3) - INTERVAL 1 HOUR AND ts <= now64(3)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    r = orjson.loads(q.stdout)[0]
    print()
    print(
        f"event-to-ClickHouse latency at {args.rate:,} events/s for {args.seconds}s "
        f"({sent:,} sent, {r['n']:,} stored on time-window rows): "
        f"p50 {r['q'][0]:,.0f} ms, p99 {r['q'][1]:,.0f} ms, max {r['mx']:,} ms"
    )
    print(
        f"  of which sent to read by the engine (ts to ingested_at): p50 {r['read'][0]:,.0f} ms, "
        f"p99 {r['read'][1]:,.0f} ms; read to stored (ingested_at to inserted_at): "
        f"p50 {r['stored'][0]:,.0f} ms, p99 {r['stored'][1]:,.0f} ms"
    )
    tail = [ln for ln in out.splitlines() if "records/s" in ln]
    if tail:
        print("engine summary:", tail[-1].strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events in the throughput workload")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate", type=int, default=20_000, help="events/s for the latency run")
    ap.add_argument("--seconds", type=int, default=20, help="length of the latency run")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--only-latency", action="store_true", help="the freshness run alone")
    ap.add_argument(
        "--linger-ms",
        type=float,
        default=5.0,
        help="the latency run's producer batching (counted in the latency; the test broker's CPU "
        "grows with the number of produce requests)",
    )
    ap.add_argument(
        "--flush-interval-s",
        type=float,
        help="clickhouse.flush_interval_s for the latency run (default: the engine's, 0.25)",
    )
    args = ap.parse_args()
    print(machine())
    events = [] if args.only_latency else workload(args.events, args.seed)
    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp:
        broker = Broker(Path(tmp))
        try:
            if not args.only_latency:
                throughput(broker, events, Path(tmp) / "clickhouse")
            if not args.skip_latency:
                latency(args, broker)
                transport_floor(broker, args.rate, args.seconds, args.linger_ms, args.seed)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
