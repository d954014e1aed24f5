"""The ClickHouse cluster variant in sql/cluster/: the schema of sql/00*.sql, sharded and replicated.

No server needed. The files are parsed and compared with the single-node files: the same tables
(as Replicated ``<name>_local`` tables) with the same columns and keys, a Distributed table under
every original name, materialized views on the local tables, plain views on the Distributed ones,
every statement ON CLUSTER. chDB, which can run neither ON CLUSTER nor Replicated engines (no
Keeper), then parses every statement as written and runs the schema with ON CLUSTER removed and the
engines made plain: the local tables alone, and the whole variant on a one-shard cluster of itself
(a ``remote_servers`` config naming its own address), compared with the single-node schema on the
same rows. chDB opens one data path per process and the integration tests use this process's, so
chDB runs in a subprocess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.core.resources import sql_dir
from sinks import tables as specs
from sinks.clickhouse import ddl_statements

CLUSTER_DIR = sql_dir() / "cluster"
ON_CLUSTER = " ON CLUSTER '{cluster}'"
DB = r"\{database\}"


# ------------------------------------------------------------------ parsing


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str]]  # (name, the rest of its definition, whitespace normalized)
    engine: str
    engine_args: list[str]
    partition_by: str | None
    order_by: str


@dataclass
class Distributed:
    name: str
    structure_of: str  # CREATE TABLE ... AS <this>
    cluster: str
    database: str
    table: str
    sharding_key: str


@dataclass
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)
    distributed: dict[str, Distributed] = field(default_factory=dict)
    mvs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (target, select)
    views: dict[str, str] = field(default_factory=dict)  # name -> select
    inserts: list[str] = field(default_factory=list)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside parentheses and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _closing(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced parentheses in: {text[:80]}")


_CREATE_TABLE = re.compile(rf"CREATE TABLE IF NOT EXISTS {DB}\.(\w+)\s*\(")
_TABLE_TAIL = re.compile(r"ENGINE = (\w+)(?:\(([^)]*)\))?\s+(?:PARTITION BY (.+?)\s+)?ORDER BY (.+)", re.S)
_DISTRIBUTED = re.compile(
    rf"CREATE TABLE IF NOT EXISTS {DB}\.(\w+) AS {DB}\.(\w+)\s+"
    r"ENGINE = Distributed\(('[^']*'), ([^,]+), (\w+), (.+)\)",
    re.S,
)
_MV = re.compile(rf"CREATE MATERIALIZED VIEW IF NOT EXISTS {DB}\.(\w+)\s+TO {DB}\.(\w+) AS\s+(.+)", re.S)
_VIEW = re.compile(rf"CREATE VIEW IF NOT EXISTS {DB}\.(\w+) AS\s+(.+)", re.S)
_ALTER_ADD = re.compile(rf"ALTER TABLE {DB}\.(\w+) ADD COLUMN IF NOT EXISTS (\w+) (.+?) AFTER (\w+)", re.S)


def _statements(folder: Path) -> list[str]:
    """The statements of folder/NNN_*.sql, read as `scrm init` reads sql/ ({database} kept)."""
    return [stmt for _, stmt in ddl_statements("{database}", folder)]


def _parse(stmts: list[str]) -> Schema:
    schema = Schema()
    for stmt in stmts:
        s = stmt.replace(ON_CLUSTER, "")
        if s.startswith("CREATE DATABASE"):
            continue
        if s.startswith("INSERT INTO"):
            schema.inserts.append(s)
        elif m := _ALTER_ADD.fullmatch(s):
            table, col, definition, after = m.groups()
            cols = schema.tables[table].columns
            if col not in [name for name, _ in cols]:
                cols.insert([name for name, _ in cols].index(after) + 1, (col, _norm(definition)))
        elif m := _DISTRIBUTED.fullmatch(s):
            schema.distributed[m[1]] = Distributed(m[1], m[2], m[3], m[4], m[5], _norm(m[6]))
        elif m := _CREATE_TABLE.match(s):
            close = _closing(s, m.end() - 1)
            columns = []
            for col in _split_top_level(s[m.end() : close]):
                name, _, definition = _norm(col).partition(" ")
                columns.append((name, definition))
            tail = _TABLE_TAIL.fullmatch(s[close + 1 :].strip())
            assert tail, f"cannot read the engine of {m[1]}: {s[close + 1 :]}"
            engine, args, partition_by, order_by = tail.groups()
            schema.tables[m[1]] = Table(
                m[1],
                columns,
                engine,
                _split_top_level(args or ""),
                partition_by and _norm(partition_by),
                _norm(order_by),
            )
        elif m := _MV.fullmatch(s):
            schema.mvs[m[1]] = (m[2], _norm(m[3]))
        elif m := _VIEW.fullmatch(s):
            schema.views[m[1]] = _norm(m[2])
        else:
            raise AssertionError(f"unexpected statement: {stmt[:120]}")
    return schema


@pytest.fixture(scope="module")
def single() -> Schema:
    return _parse(_statements(sql_dir()))


@pytest.fixture(scope="module")
def cluster() -> Schema:
    return _parse(_statements(CLUSTER_DIR))


# ------------------------------------------------------------------ the files


def test_scrm_init_does_not_apply_the_cluster_variant():
    assert sorted(p.name for p in CLUSTER_DIR.glob("*.sql")), "sql/cluster/ has no files"
    assert not any("ON CLUSTER" in stmt for _, stmt in ddl_statements("scrm"))


def test_every_statement_runs_on_the_cluster_and_is_idempotent():
    head = re.compile(
        rf"CREATE (DATABASE IF NOT EXISTS {DB}|(TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS {DB}\.\w+)"
        r" ON CLUSTER '\{cluster\}'(\s|$)"
    )
    stmts = _statements(CLUSTER_DIR)
    assert stmts
    for stmt in stmts:
        assert head.match(stmt), f"not CREATE ... IF NOT EXISTS ... ON CLUSTER '{{cluster}}': {stmt[:120]}"


def test_local_tables_are_the_single_node_tables_replicated(single: Schema, cluster: Schema):
    assert set(cluster.tables) == {f"{name}_local" for name in single.tables}
    for name, table in single.tables.items():
        local = cluster.tables[f"{name}_local"]
        assert [c for c, _ in local.columns] == [c for c, _ in table.columns], name
        assert local.columns == table.columns, f"{name}: column types / defaults differ"
        assert local.partition_by == table.partition_by, name
        assert local.order_by == table.order_by, name
        assert local.engine == f"Replicated{table.engine}", name
        assert local.engine_args == [
            f"'/clickhouse/tables/{{shard}}/{{database}}/{name}'",
            "'{replica}'",
            *table.engine_args,
        ], name


def test_original_names_are_distributed_tables_over_the_local_tables(single: Schema, cluster: Schema):
    assert set(cluster.distributed) == set(single.tables)
    mv_targets = {target for target, _ in single.mvs.values()}
    for name, dist in cluster.distributed.items():
        local = f"{name}_local"
        assert (dist.structure_of, dist.table) == (local, local), name
        assert (dist.cluster, dist.database) == ("'{cluster}'", "{database}"), name
        table = single.tables[name]
        columns = [c for c, _ in table.columns]
        if "profile_id" in columns:
            # one profile (and every replay of its rows) on one shard: FINAL per shard stays exact
            assert dist.sharding_key == "cityHash64(profile_id)", name
        elif name in mv_targets:
            # filled by the views on each shard, not through the Distributed table: a key would lie
            assert dist.sharding_key == "rand()", name
        else:
            # duplicates share their ORDER BY key, so a leading part of it puts them on one shard
            m = re.fullmatch(r"cityHash64\((.+)\)", dist.sharding_key)
            assert m, f"{name}: sharding key {dist.sharding_key}"
            key = [c.strip() for c in m[1].split(",")]
            order_by = [c.strip() for c in table.order_by.strip("()").split(",")]
            assert key == order_by[: len(key)], f"{name}: {key} is not a prefix of {order_by}"


def test_materialized_views_are_on_the_local_tables(single: Schema, cluster: Schema):
    assert set(cluster.mvs) == set(single.mvs)
    for name, (target, select) in single.mvs.items():
        local_select = re.sub(rf"FROM ({DB})\.(\w+)", r"FROM \1.\2_local", select)
        assert local_select != select, name
        assert cluster.mvs[name] == (f"{target}_local", local_select), name
        source = re.search(rf"FROM {DB}\.(\w+)", select)
        assert source and source[1] in cluster.distributed, name


def test_plain_views_read_the_distributed_tables(single: Schema, cluster: Schema):
    assert cluster.views == single.views
    for name, select in cluster.views.items():
        sources = re.findall(rf"FROM {DB}\.(\w+)", select)
        assert sources and all(s in cluster.distributed for s in sources), name


# ------------------------------------------------------------------ chDB

_RUNNER = r"""
import json, sys
from chdb import session
job = json.load(open(sys.argv[1]))
sess = session.Session(job["path"])
results = []
for sql in job["steps"]:
    try:
        text = str(sess.query(sql, "JSONCompact"))
        results.append({"rows": json.loads(text)["data"] if text.strip() else []})
    except Exception as exc:
        results.append({"error": str(exc)})
sess.close()
json.dump(results, open(job["out"], "w"))
"""

CLUSTER_NAME = "scrm_one_shard"
# clickhouse-local has no server, but it takes its own address from tcp_port: the one replica
# below is local, so the Distributed tables read and write the local tables without a network.
_CONFIG = f"""<clickhouse>
  <tcp_port>19000</tcp_port>
  <remote_servers>
    <{CLUSTER_NAME}>
      <shard><replica><host>localhost</host><port>19000</port></replica></shard>
    </{CLUSTER_NAME}>
  </remote_servers>
</clickhouse>
"""


def _for_chdb(stmt: str, database: str) -> str:
    """A cluster statement as chDB can run it: no ON CLUSTER, the plain engines, names filled in."""
    stmt = stmt.replace(ON_CLUSTER, "")
    stmt = re.sub(r"Replicated(\w+)\('[^']*', '[^']*'(, )?", r"\1(", stmt)
    return stmt.replace("{database}", database).replace("{cluster}", CLUSTER_NAME)


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_T0 = "toDateTime64('2024-03-01 00:00:00', 3, 'UTC') + toIntervalMinute(number * 37)"
# rows for every table the engine writes, by column (the engine's column lists are sinks.tables')
_ROWS: dict[str, tuple[int, dict[str, str]]] = {
    "events": (
        300,
        {
            "event_id": "'e' || toString(number)",
            "profile_id": "'p' || toString(number % 13)",
            "person_id": "'p' || toString(number % 11)",
            "type": "['page_view', 'order_paid', 'signup', 'segment_changed'][number % 4 + 1]",
            "source": "['web', 'app'][number % 2 + 1]",
            "ts": _T0,
            "ingested_at": _T0,
            "props": "if(number % 4 = 1, concat('{\"amount\": ', toString(number % 50 + 0.4), "
            "', \"currency\": \"', ['EUR', 'USD'][intDiv(number, 4) % 2 + 1], '\"}'), '{}')",
            "identifiers": "map('email', '***')",
            "pii_hashes": "map('email', hex(number))",
            "origin": "if(number % 4 = 3, 'engine', 'api')",
            "src_partition": "toInt32(number % 3)",
            "src_offset": "toInt64(number)",
            "late": "toUInt8(number % 10 = 0)",
        },
    ),
    "identities": (
        40,
        {
            "identifier": "if(number % 4 = 0, 'person:q', 'phone:') || toString(number % 17)",
            "kind": "if(number % 4 = 0, 'person', 'phone')",
            "person_id": "'p' || toString(number % 5)",
            "merge_id": "''",
            "seq": "number",
            "ts": _T0,
            "received_at": _T0,
        },
    ),
    "dead_letters": (
        20,
        {
            "received_at": _T0,
            "reason": "'bad_json'",
            "detail": "'unexpected end'",
            "raw": "'{oops' || toString(number)",
            "raw_size": "toUInt32(6)",
            "raw_key": "''",
            "origin": "'api'",
            "src_partition": "toInt32(number % 2)",
            "src_offset": "toInt64(number)",
        },
    ),
    "features": (
        100,
        {
            "profile_id": "'p' || toString(number % 13)",
            "ts": _T0,
            "values": "map('orders', toFloat64(number))",
            "tags": "['vip']",
            "segment": "'active'",
        },
    ),
    "scores": (
        100,
        {
            "model": "['churn', 'win'][number % 2 + 1]",
            "entity_id": "'p' || toString(number % 13)",
            "profile_id": "'p' || toString(number % 13)",
            "score": "number / 100",
            "model_version": "toUInt32(1)",
            "ts": _T0,
            "explanation": "map('orders', 0.5)",
            "received_at": _T0,
        },
    ),
    "model_metrics": (
        20,
        {
            "model": "['churn', 'win'][number % 2 + 1]",
            "ts": _T0,
            "stream_ts": _T0,
            "model_version": "toUInt32(1)",
            "n_learned": "number",
            "n_pending": "number % 3",
            "n_dropped": "toUInt64(0)",
            "roc_auc": "0.5",
            "log_loss": "0.69",
            "baseline_roc_auc": "nan",
            "baseline_log_loss": "nan",
            "positive_rate": "0.1",
        },
    ),
    "actions": (
        200,
        {
            "action_id": "'a' || toString(number)",
            "journey_id": "['j1', 'j2'][number % 2 + 1]",
            "journey_version": "toUInt32(1)",
            "node_id": "['n1', 'n2', 'n3'][number % 3 + 1]",
            "profile_id": "'p' || toString(number % 13)",
            "channel": "'email'",
            "template": "'welcome'",
            "variant": "'A'",
            "status": "['sent', 'capped', 'holdout'][number % 3 + 1]",
            "reason": "''",
            "trigger_event_id": "'e' || toString(number)",
            "ts": _T0,
            "received_at": _T0,
            "detail": "'{}'",
        },
    ),
}
_SPECS = [
    specs.EVENTS, specs.DEAD_LETTERS, specs.FEATURES, specs.SCORES, specs.MODEL_METRICS, specs.ACTIONS,
    specs.IDENTITIES,
]  # fmt: skip


def _inserts(database: str) -> list[str]:
    """The engine's inserts (its tables, its column lists), through the tables under the original names."""
    out = []
    for spec in _SPECS:
        n, gen = _ROWS[spec.table]
        cols = ", ".join(f"`{c}`" for c in spec.columns)
        exprs = ", ".join(gen[c] for c in spec.columns)
        out.append(
            f"INSERT INTO {database}.{spec.table} ({cols}) SETTINGS distributed_foreground_insert = 1 "
            f"SELECT {exprs} FROM numbers({n})"
        )
    return out


class _Job:
    """Statements for one chDB subprocess: queries by label, setup statements by phase."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.tags: list[tuple[str, str]] = []  # ("query", label) or ("setup", phase)

    def setup(self, phase: str, *stmts: str) -> None:
        for stmt in stmts:
            self.steps.append(stmt)
            self.tags.append(("setup", phase))

    def query(self, label: str, sql: str) -> None:
        self.steps.append(sql)
        self.tags.append(("query", label))

    def run(self, tmp: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
        """(results by query label, failed setup statements by phase)."""
        (tmp / "cluster.xml").write_text(_CONFIG)
        job = {
            "path": f"{tmp / 'chdb'}?config-file={tmp / 'cluster.xml'}",
            "steps": self.steps,
            "out": str(tmp / "results.json"),
        }
        (tmp / "job.json").write_text(json.dumps(job))
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(tmp / "job.json")],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads((tmp / "results.json").read_text())
        by_label: dict[str, dict[str, Any]] = {}
        failed: dict[str, list[str]] = {}
        for sql, (kind, name), result in zip(self.steps, self.tags, results, strict=True):
            if kind == "query":
                by_label[name] = result
            elif "error" in result:
                failed.setdefault(name, []).append(f"{sql[:300]}\n  -> {result['error'][:600]}")
        return by_label, failed


@dataclass
class ChdbRun:
    results: dict[str, dict[str, Any]]
    failed: dict[str, list[str]]
    n_statements: int
    n_local: int

    def rows(self, label: str) -> list[list[Any]]:
        result = self.results[label]
        assert "error" not in result, f"{label}: {result['error'][:1000]}"
        return result["rows"]


def _by_table(rows: list[list[Any]], suffix: str = "") -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    for table, *rest in rows:
        out.setdefault(table.removesuffix(suffix) if suffix else table, []).append(rest)
    return out


@pytest.fixture(scope="module")
def chdb_run(single: Schema, tmp_path_factory: pytest.TempPathFactory) -> ChdbRun:
    """Everything chDB is asked, in one subprocess, in unique databases dropped at the end."""
    tag = uuid.uuid4().hex[:8]
    dbs = {"single": f"scrm_single_{tag}", "local": f"scrm_local_{tag}", "cluster": f"scrm_cluster_{tag}"}
    stmts = _statements(CLUSTER_DIR)
    job = _Job()
    # 1. every statement as written (ON CLUSTER, Replicated engines) is valid ClickHouse syntax
    for i, stmt in enumerate(stmts):
        job.query(f"parse:{i}", f"SELECT formatQuery({_literal(stmt.replace('{database}', 'scrm'))})")
    # 2. the local tables and the materialized views on them, alone
    local = [s for s in stmts if s.startswith("CREATE DATABASE") or "ENGINE = Replicated" in s]
    local += [s for s in stmts if s.startswith("CREATE MATERIALIZED VIEW")]
    for i, stmt in enumerate(local):
        job.query(f"local:{i}", _for_chdb(stmt, dbs["local"]))
    # 3. the single-node schema as `scrm init` applies it, and the whole variant on a one-shard
    #    cluster; the engine's rows into both, each batch twice (a replay)
    job.setup("single", *(stmt for _, stmt in ddl_statements(dbs["single"])))
    job.query(
        "cluster_available",
        f"SELECT count() FROM system.clusters WHERE cluster = '{CLUSTER_NAME}' AND is_local",
    )
    job.setup("cluster", *(_for_chdb(s, dbs["cluster"]) for s in stmts))
    job.setup("single", *_inserts(dbs["single"]), *_inserts(dbs["single"]))
    job.setup("cluster", *_inserts(dbs["cluster"]), *_inserts(dbs["cluster"]))
    for which, db in dbs.items():
        job.query(
            f"{which}:columns",
            "SELECT table, name, type, default_kind, default_expression, compression_codec "
            f"FROM system.columns WHERE database = '{db}' ORDER BY table, position",
        )
        job.query(
            f"{which}:tables",
            "SELECT name, engine, partition_key, sorting_key FROM system.tables "
            f"WHERE database = '{db}' ORDER BY name",
        )

    def answers(label: str, which: str) -> None:
        # rows per table after FINAL (the stores too: one shard holds every key once) and the views
        for name in single.tables:
            job.query(f"{label}:{name}", f"SELECT count() FROM {dbs[which]}.{name} FINAL")
        for name in single.views:
            job.query(f"{label}:{name}", f"SELECT * FROM {dbs[which]}.{name} ORDER BY ALL")

    answers("single:rows", "single")
    answers("cluster:rows", "cluster")
    # 4. `scrm init` / `scrm run` on the cluster database afterwards: sql/00*.sql changes nothing
    job.setup("cluster", *(stmt for _, stmt in ddl_statements(dbs["cluster"])))
    job.query(
        "cluster:tables_after_init",
        f"SELECT name, engine, partition_key, sorting_key FROM system.tables "
        f"WHERE database = '{dbs['cluster']}' ORDER BY name",
    )
    answers("cluster:rows_after_init", "cluster")
    job.setup("drop", *(f"DROP DATABASE IF EXISTS {db}" for db in dbs.values()))
    results, failed = job.run(tmp_path_factory.mktemp("chdb_cluster"))
    return ChdbRun(results, failed, len(stmts), len(local))


def test_every_statement_is_valid_clickhouse_syntax(chdb_run: ChdbRun):
    for i in range(chdb_run.n_statements):
        assert chdb_run.rows(f"parse:{i}")


def test_local_tables_and_views_run_in_chdb(single: Schema, chdb_run: ChdbRun):
    for i in range(chdb_run.n_local):
        chdb_run.rows(f"local:{i}")
    single_tables = {name: rest for name, *rest in chdb_run.rows("single:tables")}
    local_tables = {name: rest for name, *rest in chdb_run.rows("local:tables")}
    single_columns = _by_table(chdb_run.rows("single:columns"))
    local_columns = _by_table(chdb_run.rows("local:columns"), "_local")
    for name in single.tables:
        assert local_tables[f"{name}_local"] == single_tables[name], name
        assert local_columns[name] == single_columns[name], name
    for name in single.mvs:
        assert local_tables[name][0] == "MaterializedView", name


def test_one_shard_cluster_gives_the_single_node_answers(single: Schema, chdb_run: ChdbRun):
    assert not chdb_run.failed.get("single"), "\n".join(chdb_run.failed["single"])
    if chdb_run.rows("cluster_available") != [[1]]:
        pytest.skip(f"this chDB does not read the remote_servers config (no cluster {CLUSTER_NAME})")
    assert not chdb_run.failed.get("cluster"), "\n".join(chdb_run.failed["cluster"])
    single_tables = {name: rest for name, *rest in chdb_run.rows("single:tables")}
    cluster_tables = {name: rest for name, *rest in chdb_run.rows("cluster:tables")}
    single_columns = _by_table(chdb_run.rows("single:columns"))
    cluster_columns = _by_table(chdb_run.rows("cluster:columns"))
    for name in single.tables:
        assert cluster_tables[name][0] == "Distributed", name
        assert cluster_tables[f"{name}_local"] == single_tables[name], name
        # what a client sees under the original name: the same columns, types, defaults, codecs
        assert cluster_columns[name] == single_columns[name], name
        assert cluster_columns[f"{name}_local"] == single_columns[name], name
    for name in single.views:
        assert cluster_columns[name] == single_columns[name], name
    assert set(cluster_tables) == set(single_tables) | {f"{name}_local" for name in single.tables}
    for name in [*single.tables, *single.views]:
        expected = chdb_run.rows(f"single:rows:{name}")
        assert expected not in ([], [[0]], [["0"]]), f"no rows in {name}"
        assert chdb_run.rows(f"cluster:rows:{name}") == expected, name
        # sql/00*.sql applied afterwards (its backfill INSERTs included) changes no answer ...
        assert chdb_run.rows(f"cluster:rows_after_init:{name}") == expected, name
    # ... and no object
    assert chdb_run.rows("cluster:tables_after_init") == chdb_run.rows("cluster:tables")
    assert not chdb_run.failed.get("drop"), "\n".join(chdb_run.failed["drop"])
