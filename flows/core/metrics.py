"""Prometheus metrics of every stage, and the HTTP endpoint that serves them.

Names follow Prometheus conventions (``scrm_..._total`` counters, ``_seconds``
histograms); the README lists them. Counters are process-wide, so the progress line of
``scrm run`` reads the same numbers an operator scrapes.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("scrm.metrics")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

RECORDS_IN = Counter("scrm_records_in_total", "Input records read, by source kind", ["source"])
EVENTS_ACCEPTED = Counter("scrm_events_accepted_total", "Events that passed validation")
EVENTS_REJECTED = Counter(
    "scrm_events_rejected_total", "Input records sent to the dead letters, by reason", ["reason"]
)
IDENTIFIERS_INVALID = Counter(
    "scrm_identifiers_invalid_total",
    "Identifiers refused by normalisation (masked, not hashed, never linked), by kind and reason",
    ["kind", "reason"],
)
EVENTS_DUPLICATE = Counter(
    "scrm_events_duplicate_total", "Accepted events dropped as repeats of an earlier eventId"
)
EVENTS_LATE = Counter(
    "scrm_events_late_total",
    "Events stored but too late (beyond features.allowed_lateness_s) to change features",
)
FEATURE_UPDATES = Counter("scrm_feature_updates_total", "Feature updates written, by store", ["store"])
EVENT_TIME = Gauge("scrm_event_time_seconds", "Newest event time seen by the parser (epoch seconds)")
EVENT_TIME_LAG = Gauge(
    "scrm_event_time_lag_seconds", "Wall clock minus the newest event time seen by the parser"
)
SINK_ROWS = Counter("scrm_sink_rows_total", "Rows or messages written, by sink", ["sink"])
SINK_BATCH_ROWS = Histogram(
    "scrm_sink_batch_rows",
    "Rows per bulk write, by sink",
    ["sink"],
    buckets=(1, 10, 100, 1000, 5000, 20000, 100000),
)
SINK_WRITE_SECONDS = Histogram(
    "scrm_sink_write_seconds",
    "Duration of one bulk write, by sink",
    ["sink"],
    buckets=_LATENCY_BUCKETS,
)
SINK_RETRIES = Counter("scrm_sink_retries_total", "Failed write attempts that were retried", ["sink"])
SINK_BUFFER_ROWS = Gauge("scrm_sink_buffer_rows", "Rows waiting in a sink's buffer", ["sink"])
INGEST_TO_SINK = Histogram(
    "scrm_ingest_to_sink_seconds",
    "From a record's arrival in the engine to its row being written (oldest row of each batch)",
    ["sink"],
    buckets=_LATENCY_BUCKETS,
)
EVENT_TO_SINK = Histogram(
    "scrm_event_to_sink_seconds",
    "From an event's own time (ts) to its row being written (newest row of each batch)",
    ["sink"],
    buckets=_LATENCY_BUCKETS,
)

MODEL_LEARNED = Counter("scrm_model_examples_learned_total", "Labelled examples a model learned", ["model"])
MODEL_ROC_AUC = Gauge("scrm_model_roc_auc", "Rolling progressive ROC AUC of a model", ["model"])
MODEL_LOG_LOSS = Gauge("scrm_model_log_loss", "Rolling progressive log loss of a model", ["model"])
MODEL_PENDING = Gauge("scrm_model_pending_observations", "Observations waiting for a label", ["model"])
MODEL_VERSION = Gauge("scrm_model_version", "Version of a model published by its learner", ["model"])
SCORES = Counter("scrm_scores_total", "Scores served, by model", ["model"])
PROFILE_WAKES = Counter(
    "scrm_profile_wakes_total",
    "Profile deadlines passed: a silent profile's windows, score or journeys moved on with stream time",
)
WAKE_DEADLINES = Gauge(
    "scrm_wake_deadlines",
    "Profile deadlines held in a worker's wake queue (silent profiles waiting to move on)",
    ["worker"],
)
_DAY_S = 86_400.0
SILENT_HELD = Gauge(
    "scrm_silent_profiles",
    "Scored profiles held in a worker's silent book, each rescored as stream time reaches its due time",
    ["worker"],
)
RESCORE_DELAY = Histogram(
    "scrm_rescore_delay_seconds",
    "Stream time between a silent profile's rescoring falling due and the time it was scored as of",
    ["model"],
    buckets=(60.0, 600.0, 3_600.0, _DAY_S / 4, _DAY_S, 3 * _DAY_S, 7 * _DAY_S, 14 * _DAY_S, 30 * _DAY_S),
)
RESCORES_UNWRITTEN = Counter(
    "scrm_rescorings_unwritten_total",
    "Silent rescorings not written: the score moved less than the model's score_step since the "
    "last one written (observed and checked against thresholds all the same)",
    ["model"],
)
IDENTIFIERS_REFUSED = Counter(
    "scrm_identifiers_refused_total",
    "Identifiers the identity graph left out of a link (a per-person limit), by name and reason",
    ["name", "reason"],
)
PERSONS_MERGED = Counter(
    "scrm_persons_merged_total",
    "Persons merged into another by an event that showed their identifiers together",
)
HANDOFFS = Counter(
    "scrm_person_handoffs_total",
    "Profile states at merges of persons, by step: handed_off by the loser, absorbed by the "
    "winner, missing (the winner waited identity.handoff_wait_s and went on without it)",
    ["step"],
)
CONSENT_RECORDS = Counter(
    "scrm_consent_records_total",
    "Consent grants, refusals and suppressions from the stream, by op and outcome (applied, stale, ignored)",
    ["op", "outcome"],
)
SUPPRESSIONS = Counter(
    "scrm_suppressions_total", "Channels suppressed by unsubscribe / complaint events", ["kind"]
)
DECISIONS = Counter(
    "scrm_journey_decisions_total",
    "Journey decisions (sent, capped, suppressed, ...), by journey and status",
    ["journey", "status"],
)


def value(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of one sample (0 when never set): for progress lines and tests."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def labelled_values(name: str, label: str) -> dict[str, float]:
    """{label value: sample value} for a labelled counter, e.g. rejections by reason."""
    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == name and label in sample.labels:
                out[sample.labels[label]] = sample.value
    return out


def serve(port: int, bind: str = "127.0.0.1") -> int | None:
    """Start the /metrics HTTP endpoint (0 = off). Returns the port, or None when off."""
    if port == 0:
        return None
    try:
        start_http_server(port, addr=bind)
    except OSError as exc:
        log.warning("metrics endpoint %s:%d not started: %s", bind, port, exc)
        return None
    log.info("Prometheus metrics on http://%s:%d/metrics", bind, port)
    return port
