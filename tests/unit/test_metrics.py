"""The Prometheus endpoint serves the engine's metrics under their documented names."""

from __future__ import annotations

import socket
import urllib.request

from sinks import metrics


def test_endpoint_serves_scrm_metrics():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert metrics.serve(port) == port
    metrics.EVENTS_REJECTED.labels(reason="invalid_json").inc()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in (
        "scrm_records_in_total", "scrm_events_accepted_total", "scrm_events_rejected_total",
        "scrm_events_duplicate_total", "scrm_events_late_total", "scrm_sink_rows_total",
        "scrm_sink_write_seconds", "scrm_ingest_to_sink_seconds", "scrm_event_to_sink_seconds",
        "scrm_event_time_lag_seconds", "scrm_feature_updates_total",
    ):  # fmt: skip
        assert f"# TYPE {name.removesuffix('_total')}" in body, name
    assert 'scrm_events_rejected_total{reason="invalid_json"}' in body


def test_port_zero_turns_the_endpoint_off():
    assert metrics.serve(0) is None
