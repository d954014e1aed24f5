"""Analysts' reports: parameterised SQL files in ``sql/reports/``, run by ``scrm report``.

A report is one ``.sql`` file whose header says what it answers and its parameters::

    -- report: funnel
    -- answers: How many profiles did the steps in order ...
    -- chart: bar                     (optional: see flows.app.charts)
    -- param: steps Array(String) = ['session_start', 'add_to_cart', 'order_paid']
    -- param: window_s UInt64 = 86400
    SELECT ... {steps:Array(String)} ... FROM {database}.events FINAL ...

Parameters are ClickHouse query parameters (``{name:Type}``), bound by the server, never
pasted into the SQL; ``{database}`` is the configured database. The same files run
unchanged on a ClickHouse server and on chDB. A value given on the command line
(``--param steps=signup,order_paid``) is parsed by its declared type: arrays from
comma-separated items, numbers as numbers, everything else as text.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.core.errors import ConfigError
from flows.core.resources import sql_dir

_PARAM = re.compile(r"--\s*param:\s*([a-z_][a-z0-9_]*)\s+(\S+(?:\([^)]*\))?)\s*=\s*(.+)$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any


@dataclass(frozen=True)
class Report:
    name: str
    answers: str
    params: tuple[Param, ...]
    sql: str
    path: Path
    chart: str = ""  # a flows.app.charts kind, when a picture says more


def _default(text: str, typ: str) -> Any:
    text = text.strip()
    if typ.startswith("Array("):
        return list(ast.literal_eval(text))
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    if typ.startswith(("UInt", "Int")):
        return int(text)
    if typ.startswith("Float"):
        return float(text)
    return text


def parse_report(path: Path) -> Report:
    """Read one report file; a header without ``report:`` or ``answers:`` is an error."""
    text = path.read_text(encoding="utf-8")
    name = answers = chart = ""
    params: list[Param] = []
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("--"):
            continue
        if s.startswith("-- report:"):
            name = s.split(":", 1)[1].strip()
        elif s.startswith("-- answers:"):
            answers = s.split(":", 1)[1].strip()
        elif s.startswith("-- chart:"):
            chart = s.split(":", 1)[1].strip()
        elif s.startswith("-- param:"):
            m = _PARAM.match(s)
            if m is None:
                raise ConfigError(f"{path}: cannot read parameter line {s!r} (-- param: NAME Type = default)")
            params.append(Param(m.group(1), m.group(2), _default(m.group(3), m.group(2))))
    if not name or not answers:
        raise ConfigError(f"{path}: a report needs '-- report: NAME' and '-- answers: ...' header lines")
    return Report(name, answers, tuple(params), text, path, chart)


def reports(folder: Path | None = None) -> dict[str, Report]:
    folder = folder or sql_dir() / "reports"
    out = {}
    for path in sorted(folder.glob("*.sql")):
        r = parse_report(path)
        out[r.name] = r
    return out


def coerce(value: str, typ: str) -> Any:
    """A command-line value as the parameter's type.

    >>> coerce("signup, order_paid", "Array(String)"), coerce("3600", "UInt64"), coerce("x", "String")
    (['signup', 'order_paid'], 3600, 'x')
    """
    if typ.startswith("Array("):
        inner = typ[len("Array(") : -1]
        return [coerce(v.strip(), inner) for v in value.split(",") if v.strip()]
    if typ.startswith(("UInt", "Int")):
        return int(value)
    if typ.startswith("Float"):
        return float(value)
    return value


def bind(report: Report, given: dict[str, str]) -> dict[str, Any]:
    """Defaults overlaid with the given values; an unknown name is a clear error."""
    known = {p.name: p for p in report.params}
    unknown = set(given) - set(known)
    if unknown:
        raise ConfigError(
            f"report {report.name}: unknown parameter(s) {sorted(unknown)}; "
            f"it takes {sorted(known) or 'none'}"
        )
    values = {p.name: p.default for p in report.params}
    for k, v in given.items():
        try:
            values[k] = coerce(v, known[k].type)
        except ValueError:
            raise ConfigError(f"report {report.name}: {k}={v!r} is not a {known[k].type}") from None
    return values


EVENTS = "{database}.events FINAL"
BY_PERSON = "{database}.events_by_person"  # sql/008_identities.sql


def run_report(
    client: Any,
    report: Report,
    database: str,
    given: dict[str, str] | None = None,
    by_person: bool = False,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, rows) of one report against `database`; `by_person`: every event
    counts for the person it belongs to now (the ``events_by_person`` view)."""
    sql = report.sql.replace(EVENTS, BY_PERSON) if by_person else report.sql
    sql = sql.replace("{database}", database)
    result = client.query(sql, parameters=bind(report, given or {}))
    return list(result.column_names), [tuple(r) for r in result.result_rows]
