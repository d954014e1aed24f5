"""The Prometheus endpoint serves the engine's metrics under their documented names."""

from __future__ import annotations

import socket
import urllib.request

from flows.core import metrics


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
        "scrm_event_time_lag_seconds", "scrm_event_time_seconds", "scrm_feature_updates_total",
    ):  # fmt: skip
        assert f"# TYPE {name.removesuffix('_total')}" in body, name
    assert 'scrm_events_rejected_total{reason="invalid_json"}' in body


def test_port_zero_turns_the_endpoint_off():
    assert metrics.serve(0) is None


def _scrm_metrics() -> dict[str, str]:
    """Every scrm_ metric the engine registers: name -> type."""
    from prometheus_client import REGISTRY

    import rules.actions  # noqa: F401  (modules that register metrics of their own)
    import scoring.learner  # noqa: F401

    return {m.name: m.type for m in REGISTRY.collect() if m.name.startswith("scrm_")}


def test_metric_names_follow_prometheus_conventions_and_the_readme_lists_them():
    from pathlib import Path

    found = _scrm_metrics()
    assert len(found) >= 20
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    table = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    for name, kind in found.items():
        # prometheus_client reports counters without their _total suffix
        shown = f"{name}_total" if kind == "counter" else name
        assert f"`{shown}`" in table, f"{shown} is not in the README's metrics table"
        if kind == "histogram":
            assert name.endswith(("_seconds", "_rows")), f"{name}: a histogram names its unit"
        if kind == "gauge":
            assert not name.endswith("_total"), f"{name}: _total is for counters"
        assert name == name.lower() and "__" not in name, name
