"""The layers import in one direction: each package only from the layers below it.

    flows.app        engine, CLI, progress, reports, charts, produce, test support
    flows.dataflow   the Bytewax graph: per-profile state and stages, build_flow
    rules            journeys, their runtime, the guards, actions
    scoring          models, learners, served scores
    flows.features   feature declarations, windows, tags, RFM, dedupe
    flows.sources    Kafka, file and synthetic sources
    sinks            ClickHouse, Kafka, Redis writers;  flows.synthetic  the generator
    flows.core       errors, settings, contract, messages, durations, conditions, stream time

The test parses every import (inside functions too) and fails on any edge that runs
sideways or back up, and on any import cycle between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "scoring", "rules", "sinks")
RANK = {
    "flows.core": 0,
    "sinks": 1,
    "flows.synthetic": 1,
    "flows.sources": 2,
    "flows.features": 3,
    "scoring": 4,
    "rules": 5,
    "flows.dataflow": 6,
    "flows.app": 7,
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


MODULES = _modules()


def _layer(module: str) -> str | None:
    """The layer a module belongs to (the longest matching prefix), None for a bare package."""
    best = None
    for layer in RANK:
        if (module == layer or module.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(path: Path) -> set[str]:
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            deps.update(_resolve(a.name) for a in node.names if a.name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                full = f"{node.module}.{a.name}"
                deps.add(full if full in MODULES else _resolve(node.module))
    return deps - {""}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def test_every_module_belongs_to_a_layer() -> None:
    loose = [m for m in MODULES if _layer(m) is None and m not in PACKAGES]
    assert loose == [], f"modules outside every layer: {loose}"


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in graph.items():
        here = _layer(module)
        for dep in deps:
            there = _layer(dep)
            if here is None or there is None or here == there:
                continue
            if RANK[there] >= RANK[here]:
                bad.append(f"{module} ({here}) imports {dep} ({there})")
    return sorted(bad)


def test_imports_only_run_down() -> None:
    bad = _violations(GRAPH)
    assert bad == [], "imports that run sideways or up:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    cycles: list[str] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(GRAPH.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join([*path[path.index(d) :], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_the_check_catches_an_edge_up_or_sideways() -> None:
    assert _violations({"sinks.feature_store": {"flows.dataflow.profile"}}) == [
        "sinks.feature_store (sinks) imports flows.dataflow.profile (flows.dataflow)"
    ]
    assert _violations({"sinks.kafka": {"flows.synthetic.customers"}})  # same rank, other package
    assert _violations({"rules.store": {"flows.core.errors", "rules.journeys"}}) == []
    assert "flows.core.messages" in GRAPH["sinks.feature_store"]  # the parser sees real edges
