"""The Grafana dashboard is valid JSON and every metric it plots is one the engine exports."""

from __future__ import annotations

import re

import orjson
from prometheus_client import REGISTRY

import flows.core.metrics  # noqa: F401 - registers the engine's metrics
from flows.core.resources import config_dir


def test_dashboard_plots_only_exported_metrics() -> None:
    dash = orjson.loads((config_dir() / "grafana" / "scrm-dashboard.json").read_bytes())
    exported = {s.name for m in REGISTRY.collect() for s in m.samples} | {m.name for m in REGISTRY.collect()}
    titles = [p["title"] for p in dash["panels"]]
    wanted = ["Events per second", "Event-time lag", "Journey decisions by status", "Dead letters by reason"]
    wanted += ["Model ROC AUC (rolling, progressive)", "Event to ClickHouse, p50 / p99"]
    wanted += ["Profile wakes per second", "Silent rescoring delay (stream time), p50 / p99"]
    wanted += ["Deadlines held (wake queue), by worker", "Silent rescorings per second: made, not written"]
    assert set(wanted) <= set(titles)
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(scrm_[a-z_]+)", target["expr"]):
                base = re.sub(r"_(bucket|count|sum|total)$", "", name)
                assert name in exported or base in exported, (panel["title"], name)
