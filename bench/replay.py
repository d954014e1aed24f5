"""Order-heavy replay: the CDNOW history through the engine at full speed, features off and on.

Prints, from one run on this machine:

1. events/s of the first 39 weeks of CDNOW (``bench/cdnow.py``: 49,086 ``order_paid``
   events of 23,570 customers, January to September 1997, event time shifted into 2025)
   replayed in-process from a JSONL file (the source of ``scrm run --file``) with an
   embedded Valkey and chDB, twice in one process:

   (a) **features off**: ingest only (validate, PII, dedupe, ClickHouse ``events``);
   (b) **full pipeline** on the shipped defaults: features, tags, RFM, the models of
       ``config/models.toml``, the journeys of ``config/journeys`` with their guards, and
       every sink a file replay has (ClickHouse tables, Redis features and scores);
   (c) the same **without models**: nothing is scored, so a silent customer is never woken
       to be rescored as of stream time; (b) against (c) is what aging the scores costs;

2. the ratio (b)/(a) beside the targets (≥ 0.35× and ≥ 5,000 events/s), and (c)/(a);
   the silent rescorings (b) made against those the models' schedule declares (counted
   from the input, as if each fired on time), and what one may cost for all of them to fit
   the rate target;
3. the rows each run left per ClickHouse table (``FINAL``), and rows per input event.

The wall time is the dataflow's run alone: from the first line read to the last row
flushed; set-up (DDL, journey loading, building the flow) is not counted. A small replay
first warms the process up. Each run starts from an empty Valkey and its own database.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
# The root goes first: bench/scoring.py would otherwise hide the `scoring` package.
sys.path[:0] = [str(ROOT)]
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

import cdnow  # noqa: E402
import ingest as base  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402

from flows.app.engine import journey_catalog, make_sinks, prepare_clickhouse  # noqa: E402
from flows.core import metrics  # noqa: E402
from flows.core.settings import Settings, load_settings  # noqa: E402
from flows.dataflow.build import build_flow, feature_set, model_set  # noqa: E402
from flows.sources.control import RunControl  # noqa: E402
from flows.sources.files import FileSource  # noqa: E402
from scoring.modeldefs import ModelDef  # noqa: E402
from scoring.observe import rescore_every  # noqa: E402
from sinks.clickhouse import connect, table_counts  # noqa: E402
from sinks.redis_store import RedisService  # noqa: E402
from sinks.retry import RetryPolicy  # noqa: E402

RATIO_TARGET = 0.35
RATE_TARGET = 5_000
# Tables filled by ClickHouse's own materialized views, not by the engine's sinks.
VIEW_TABLES = frozenset({"paid_orders"})


@dataclass(frozen=True)
class Replay:
    """One replay's figures: input events, dataflow seconds, rows per ClickHouse table."""

    label: str
    events: int
    seconds: float
    tables: dict[str, int]
    database: str = ""
    breakdown: tuple[str, ...] = ()
    wakes: int = 0  # profile deadlines passed
    rescored: int = 0  # silent rescorings they made (all models)
    late_s: float = 0.0  # stream seconds between those rescorings' due times and their scores, summed

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def rows_written(self) -> int:
        """Rows the engine's sinks wrote (views' tables left out)."""
        return sum(n for t, n in self.tables.items() if t not in VIEW_TABLES)


def write_events(events: list[bytes], folder: Path, name: str = "cdnow.jsonl") -> Path:
    path = folder / name
    path.write_bytes(b"\n".join(events) + b"\n")
    return path


def settings_for(path: Path, chdb: Path, redis_url: str, full: bool, models: bool = True) -> Settings:
    """A file replay at full speed; `full`: the shipped defaults (without models unless
    `models`), else features off."""
    return load_settings(
        env={},
        overrides={
            "source": {"kind": "file", "file": str(path), "rate": 0},
            "clickhouse": {"url": f"chdb://{chdb}", "database": f"br_{uuid.uuid4().hex[:8]}"},
            "redis": {"url": redis_url},
            "metrics": {"port": 0},
            "features": {"enabled": full},
            "models": {"enabled": models},
            "engine": {"progress_interval_s": 3600},
        },
    )


# What the extra rows of the full pipeline are: the engine's own events, decisions, scores.
BREAKDOWN = (
    "SELECT 'events', type, count() FROM {db}.events FINAL WHERE origin = 'engine' GROUP BY type",
    "SELECT 'actions', concat(journey_id, ' ', status), count() FROM {db}.actions FINAL "
    "GROUP BY journey_id, status",
    "SELECT 'scores', model, count() FROM {db}.scores FINAL GROUP BY model",
)


def replay(
    path: Path,
    chdb: Path,
    redis_url: str,
    full: bool,
    label: str = "",
    breakdown: bool = False,
    models: bool = True,
) -> Replay:
    """Replay `path` once in this process; the time is the dataflow's run only."""
    s = settings_for(path, chdb, redis_url, full, models)
    redis.Redis.from_url(redis_url).flushdb()  # guards' records of an earlier run would replay
    prepare_clickhouse(s)
    catalog = journey_catalog(s, RedisService(s.redis, chdb.parent, RetryPolicy()))
    if catalog is not None:
        catalog.refresh()
    control = RunControl()
    source = FileSource(path, s.source.csv, 0.0, control)
    flow = build_flow(s, source, make_sinks(s), journeys=catalog)
    before = aging()
    seconds = base.timed(flow, s, control)
    wakes, rescored, late_s = (a - b for a, b in zip(aging(), before, strict=True))
    client = connect(s.clickhouse)
    try:
        db = s.clickhouse.database
        tables = table_counts(client, db)
        rows = [r for q in BREAKDOWN for r in client.query(q.format(db=db)).result_rows] if breakdown else []
    finally:
        client.close()
    with path.open("rb") as fh:
        n = sum(1 for line in fh if line.strip())
    lines = tuple(f"{t}: {what} {k:,} ({k / n:.2f} per input event)" for t, what, k in sorted(rows))
    label = label or ("full pipeline" if full else "features off")
    return Replay(label, n, seconds, tables, db, lines, int(wakes), int(rescored), late_s)


def aging() -> tuple[float, float, float]:
    """This process's profile wakes, silent rescorings and their summed delay so far
    (the engine's Prometheus metrics; a replay reads them before and after)."""

    def all_models(name: str) -> float:
        return sum(metrics.labelled_values(name, "model").values())

    return (
        metrics.value("scrm_profile_wakes_total"),
        all_models("scrm_rescore_delay_seconds_count"),
        all_models("scrm_rescore_delay_seconds_sum"),
    )


@dataclass(frozen=True)
class Replays:
    """The three replays of one run: (a) features off, (b) full pipeline, (c) no models."""

    off: Replay
    full: Replay
    unscored: Replay


def measure(
    events: list[bytes], folder: Path, chdb: Path, redis_url: str, progress=print, breakdown: bool = False
) -> Replays:
    """(a), (b) and (c) over `events`, after a small warm-up replay."""
    warm = write_events(events[:3000], folder, "cdnow-warm.jsonl")
    replay(warm, chdb, redis_url, True)
    path = write_events(events, folder)
    progress(f"replay (a) features off: {len(events):,} events")
    off = replay(path, chdb, redis_url, False, "(a) features off: validate, PII, dedupe, ClickHouse")
    progress(f"  {off.rate:,.0f} events/s; replay (b) full pipeline on the shipped defaults")
    full = replay(path, chdb, redis_url, True, "(b) full pipeline, shipped defaults", breakdown)
    progress(f"  {full.rate:,.0f} events/s; replay (c) the same without models")
    unscored = replay(
        path, chdb, redis_url, True, "(c) full pipeline without models (no aging)", models=False
    )
    progress(f"  {unscored.rate:,.0f} events/s")
    return Replays(off, full, unscored)


def declared_rescorings(events: list[bytes], m: ModelDef) -> int:
    """The silent rescorings model `m`'s schedule declares over `events`, were every one
    fired at its due time: after each customer's activity, one per `rescore_every` of the
    silence so far, up to their next activity or the end of the input."""
    times: dict[str, list[int]] = {}
    kinds = m.label.activity_types
    end = 0
    for raw in events:
        e = orjson.loads(raw)
        end = max(end, e["ts"])
        if not kinds or e["type"] in kinds:
            times.setdefault(e["profileId"], []).append(e["ts"])
    n = 0
    for ts in times.values():
        acts = sorted(set(ts))
        for active, until in zip(acts, [*acts[1:], end], strict=True):
            last = active
            while (last := last + rescore_every(m, last - active)) <= until:
                n += 1
    return n


def declared(events: list[bytes]) -> dict[str, int]:
    """`declared_rescorings` of each profile model the shipped defaults score."""
    s = load_settings(env={})
    models = model_set(s, feature_set(s))
    if models is None:
        return {}
    return {m.name: declared_rescorings(events, m) for m in models.for_entity("profile")}


def report(runs: Replays, schedule: dict[str, int] | None = None) -> str:
    off, full, unscored = runs.off, runs.full, runs.unscored
    ratio = full.rate / off.rate
    lines = [
        f"{'replay (1 worker, in-process, from a JSONL file)':<60} {'events/s':>10} {'seconds':>8}",
        *(f"{r.label:<60} {r.rate:>10,.0f} {r.seconds:>8.1f}" for r in (off, full, unscored)),
        f"(b)/(a): {ratio:.2f}x (target >= {RATIO_TARGET}x: "
        f"{'met' if ratio >= RATIO_TARGET else 'not met'}); "
        f"(b) {full.rate:,.0f} events/s (target >= {RATE_TARGET:,}: "
        f"{'met' if full.rate >= RATE_TARGET else 'not met'})",
        f"(c)/(a): {unscored.rate / off.rate:.2f}x; aging the scores (b against c): "
        f"{full.seconds - unscored.seconds:.1f} s of (b)'s {full.seconds:.1f} s, "
        f"{full.tables.get('scores', 0):,} scores",
        f"(b)'s deadlines: {full.wakes:,} profile wakes ({full.wakes / full.events:.1f} per event: "
        f"windows, journey steps, threshold crossings), {full.rescored:,} silent rescorings by the "
        f"silent book, on average {full.late_s / max(1, full.rescored) / 86_400:.1f} days of stream "
        f"time after they fell due (later only where the profile had moved past its due time first)",
        *_schedule_lines(runs, schedule or {}),
        "",
        f"{'ClickHouse table (rows, FINAL)':<32} {'(a)':>10} {'(b)':>10} {'(c)':>10} {'(b) per event':>14}",
    ]
    for t in sorted(set(off.tables) | set(full.tables)):
        note = " (a view's)" if t in VIEW_TABLES else ""
        a, b, c = off.tables.get(t, 0), full.tables.get(t, 0), unscored.tables.get(t, 0)
        lines.append(f"{t + note:<32} {a:>10,} {b:>10,} {c:>10,} {b / full.events:>14.2f}")
    lines.append(
        f"{'rows written by the engine':<32} {off.rows_written:>10,} {full.rows_written:>10,} "
        f"{unscored.rows_written:>10,} {full.rows_written / full.events:>14.2f}"
    )
    lines.append(
        f"rows written per input event: (a) {off.rows_written / off.events:.2f}, "
        f"(b) {full.rows_written / full.events:.2f}, (c) {unscored.rows_written / unscored.events:.2f}"
    )
    if full.breakdown:
        lines += ["", "(b) by kind:", *(f"  {b}" for b in full.breakdown)]
    return "\n".join(lines)


def _schedule_lines(runs: Replays, schedule: dict[str, int]) -> list[str]:
    """What the declared schedule asks of (b), and what one rescoring may cost for it to
    run at the rate target."""
    asked = sum(schedule.values())
    if not asked:  # no model, or an input too short to declare any (a --limit smoke run)
        return []
    full = runs.full
    budget_s = full.events / RATE_TARGET
    aging_s = full.seconds - runs.unscored.seconds
    return [
        f"the models' declared schedule, fired on time: {asked:,} silent rescorings "
        f"({', '.join(f'{k} {v:,}' for k, v in schedule.items())}; {asked / full.events:.1f} per event); "
        f"(b) made {full.rescored / asked:.0%} of them, at {aging_s / max(1, full.rescored) * 1e6:,.0f} µs "
        f"of wall each (b against c); all of them in {budget_s:.1f} s ({RATE_TARGET:,} events/s) leaves "
        f"{budget_s / asked * 1e6:.1f} µs per rescoring, with its rows, and nothing for the events",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="replay only the first N events (a smoke run)")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also the full pipeline's engine events by type, decisions by journey and status, scores",
    )
    args = ap.parse_args()
    print(base.machine())
    events = cdnow.events(cdnow.CALIBRATION_END_MS)[: args.limit]
    customers = len({cid for cid, ms, _ in cdnow.transactions() if ms < cdnow.CALIBRATION_END_MS})
    print(
        f"workload: CDNOW before 1997-10-01, {len(events):,} order_paid events "
        f"(of {customers:,} customers in the full 39 weeks)"
    )
    with tempfile.TemporaryDirectory(prefix="scrm-bench-replay-") as tmp:
        folder = Path(tmp)
        valkey = RedisService(load_settings(env={}).redis, folder, RetryPolicy())  # embedded
        url = valkey.start()
        try:
            runs = measure(events, folder, folder / "ch", url, breakdown=args.breakdown)
        finally:
            valkey.stop()
    print()
    print(report(runs, declared(events)))


if __name__ == "__main__":
    main()
