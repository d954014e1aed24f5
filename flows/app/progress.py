"""Live progress while the engine runs, and the summary when it stops.

Both read the process's Prometheus counters, so what the operator sees here is what
``/metrics`` serves. On a terminal the progress is one live line; elsewhere (CI, logs)
it is a plain line every ``engine.progress_interval_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from flows.core import metrics
from flows.core.streamtime import LIVE_WINDOW_MS


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment."""

    at: float
    records_in: float
    accepted: float
    rejected: Mapping[str, float]
    duplicate: float
    lag_s: float
    sink_rows: Mapping[str, float] = field(default_factory=dict)
    late: float = 0.0
    event_time_s: float = 0.0  # newest event time parsed (epoch s), 0 before any

    @classmethod
    def take(cls) -> Snapshot:
        return cls(
            at=time.monotonic(),
            records_in=sum(metrics.labelled_values("scrm_records_in_total", "source").values()),
            accepted=metrics.value("scrm_events_accepted_total"),
            rejected=metrics.labelled_values("scrm_events_rejected_total", "reason"),
            duplicate=metrics.value("scrm_events_duplicate_total"),
            lag_s=metrics.value("scrm_event_time_lag_seconds"),
            sink_rows=metrics.labelled_values("scrm_sink_rows_total", "sink"),
            late=metrics.value("scrm_events_late_total"),
            event_time_s=metrics.value("scrm_event_time_seconds"),
        )

    @property
    def rejected_total(self) -> float:
        return sum(self.rejected.values())

    def minus(self, base: Snapshot) -> Snapshot:
        """Counts since `base` (counters are process-wide; a run reports its own share)."""
        return Snapshot(
            at=self.at,
            records_in=self.records_in - base.records_in,
            accepted=self.accepted - base.accepted,
            rejected={
                k: v - base.rejected.get(k, 0.0)
                for k, v in self.rejected.items()
                if v - base.rejected.get(k, 0.0)
            },
            duplicate=self.duplicate - base.duplicate,
            lag_s=self.lag_s,
            event_time_s=self.event_time_s,
            late=self.late - base.late,
            sink_rows={
                k: v - base.sink_rows.get(k, 0.0)
                for k, v in self.sink_rows.items()
                if v - base.sink_rows.get(k, 0.0)
            },
        )


def progress_line(elapsed_s: float, snap: Snapshot, rate: float) -> str:
    """One line of progress (accepted counts unique events: validated minus duplicates).

    Live, it ends with the event-time lag; replaying history (the newest event more than
    `LIVE_WINDOW_MS` behind the wall clock) with the event time reached instead.

    >>> s = Snapshot(0, 1000, 990, {"invalid_json": 10}, 5, 0.25, {"clickhouse:events": 980})
    >>> progress_line(10, s, 100.0)
    '[    10s] in 1,000 (100/s) · accepted 985 · rejected 10 · duplicate 5 · written events 980 · lag 0.2s'
    >>> old = Snapshot(0, 10, 10, {}, 0, 9e8, {}, event_time_s=1_700_000_000)
    >>> progress_line(10, old, 1.0).rsplit(" · ", 1)[1]
    'event time 2023-11-14 22:13 UTC'
    """
    written = " ".join(
        f"{name.split(':', 1)[-1]} {int(n):,}"
        for name, n in sorted(snap.sink_rows.items())
        if name.startswith("clickhouse:")
    )
    return (
        f"[{elapsed_s:>6.0f}s] in {int(snap.records_in):,} ({rate:,.0f}/s) · "
        f"accepted {int(snap.accepted - snap.duplicate):,} · rejected {int(snap.rejected_total):,} · "
        f"duplicate {int(snap.duplicate):,} · written {written or '-'} · {_time_reached(snap)}"
    )


def _time_reached(snap: Snapshot) -> str:
    if snap.event_time_s and snap.lag_s * 1000 > LIVE_WINDOW_MS:
        return f"event time {datetime.fromtimestamp(snap.event_time_s, UTC):%Y-%m-%d %H:%M} UTC"
    return f"lag {snap.lag_s:.1f}s"


class ProgressReporter:
    """A thread that prints progress every `interval_s` until stopped."""

    def __init__(self, console: Console, interval_s: float) -> None:
        self._console = console
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self.base = Snapshot.take()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        last = self.base
        live = self._console.is_terminal
        while not self._stop.wait(self._interval):
            snap = Snapshot.take()
            delta_t = max(snap.at - last.at, 1e-9)
            rate = (snap.records_in - last.records_in) / delta_t
            line = progress_line(snap.at - self.base.at, snap.minus(self.base), rate)
            if live:
                self._console.print(line, end="\r", soft_wrap=True, highlight=False)
            else:
                self._console.print(line, soft_wrap=True, highlight=False)
            last = snap
        if live:
            self._console.print()


def model_rows() -> dict[str, dict[str, float]]:
    """Per model, from the process's metrics: version, learned, pending, AUC, log loss, scores."""
    cols = {
        "version": "scrm_model_version",
        "learned": "scrm_model_examples_learned_total",
        "pending": "scrm_model_pending_observations",
        "auc": "scrm_model_roc_auc",
        "logloss": "scrm_model_log_loss",
        "scores": "scrm_scores_total",
    }
    out: dict[str, dict[str, float]] = {}
    for key, name in cols.items():
        for model, v in metrics.labelled_values(name, "model").items():
            out.setdefault(model, dict.fromkeys(cols, 0.0))[key] = v
    return out


def decision_counts() -> dict[str, float]:
    """Journey decisions by status, summed over journeys (process-wide counters)."""
    out: dict[str, float] = {}
    for metric in metrics.REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "scrm_journey_decisions_total":
                status = sample.labels["status"]
                out[status] = out.get(status, 0.0) + sample.value
    return {k: v for k, v in out.items() if v}


def identity_counts() -> tuple[int, int]:
    """(persons merged, identifiers left out of a link by a limit), process-wide."""
    merged = refused = 0.0
    for metric in metrics.REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "scrm_persons_merged_total":
                merged += sample.value
            elif sample.name == "scrm_identifiers_refused_total":
                refused += sample.value
    return int(merged), int(refused)


@dataclass(frozen=True)
class RunSummary:
    counts: Snapshot
    elapsed_s: float
    tables: Mapping[str, int]
    clickhouse_url: str
    database: str
    data_dir: str
    redis: str
    cpu_s: float = 0.0  # CPU of this process's threads over `elapsed_s` (chDB's included)
    # From the first record read to the end: the rate's time, without the start of the
    # dataflow (a cluster's processes connecting to each other) or the wait for a first record.
    flow_s: float | None = None

    @property
    def reading_s(self) -> float:
        return self.elapsed_s if self.flow_s is None else self.flow_s

    @property
    def rate(self) -> float:
        return self.counts.records_in / self.reading_s if self.reading_s > 0 else 0.0


def render_summary(console: Console, s: RunSummary) -> None:
    """Counts by status and reason, rate, rows per table, where the data is, how to query."""
    c = s.counts
    status = Table(title="Input records by status", show_edge=False)
    status.add_column("status")
    status.add_column("reason")
    status.add_column("records", justify="right")
    status.add_row("accepted", "", f"{int(c.accepted - c.duplicate):,}")
    if c.late:
        status.add_row("  of which late", "stored, too late to change features", f"{int(c.late):,}")
    status.add_row("duplicate", "repeated eventId", f"{int(c.duplicate):,}")
    for reason, n in sorted(c.rejected.items(), key=lambda kv: -kv[1]):
        status.add_row("rejected", reason, f"{int(n):,}")
    status.add_row("total in", "", f"{int(c.records_in):,}", style="bold")
    console.print(status)
    cores = s.cpu_s / s.elapsed_s if s.elapsed_s > 0 else 0.0
    run = (
        f" (from the first record read; the run {s.elapsed_s:.1f}s)"
        if s.elapsed_s - s.reading_s >= 0.05
        else ""
    )
    console.print(
        f"{int(c.records_in):,} records in {s.reading_s:.1f}s = [bold]{s.rate:,.0f} records/s[/]{run}; "
        f"CPU {s.cpu_s:.1f}s in this process ({cores:.2f} cores; its children, Valkey, Kafka not counted)"
    )
    tables = Table(title=f"ClickHouse {s.database} (rows, FINAL)", show_edge=False)
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    for name, n in sorted(s.tables.items()):
        tables.add_row(name, f"{n:,}")
    console.print(tables)
    updates = c.sink_rows.get("redis:features", 0)
    if updates:
        console.print(f"feature store: {int(updates):,} profile updates written to Redis")
    models = model_rows()
    if models:
        mt = Table(title="Models (this process's learners; AUC progressive, rolling)", show_edge=False)
        for col in ("model", "version", "learned", "pending", "ROC AUC", "log loss", "scores served"):
            mt.add_column(col, justify="left" if col == "model" else "right")
        for name, r in sorted(models.items()):
            mt.add_row(
                name, f"{int(r['version'])}", f"{int(r['learned']):,}", f"{int(r['pending']):,}",
                f"{r['auc']:.3f}" if r["learned"] and r["auc"] == r["auc"] else "-",
                f"{r['logloss']:.3f}" if r["learned"] else "-",
                f"{int(r['scores']):,}",
            )  # fmt: skip
        console.print(mt)
    decisions = decision_counts()
    if decisions:
        parts = " · ".join(
            f"{status} {int(n):,}" for status, n in sorted(decisions.items(), key=lambda kv: -kv[1])
        )
        console.print(f"journey decisions: {parts}")
    merged, refused = identity_counts()
    if merged or refused:
        console.print(
            f"persons: {merged:,} merged into an older one; {refused:,} identifiers left out by a limit"
        )
    console.print(f"data: {s.data_dir}  ·  ClickHouse: {s.clickhouse_url}  ·  Redis: {s.redis}")
    console.print(
        'query: [bold]scrm query "SELECT type, count() FROM '
        f'{s.database}.events FINAL GROUP BY type ORDER BY 2 DESC"[/]'
        + (
            "  (chDB opens its data in one process at a time: query when the engine is stopped)"
            if s.clickhouse_url.startswith("chdb://")
            else ""
        )
    )
