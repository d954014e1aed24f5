"""The DDL in sql/: ordered files, every statement names the substituted database."""

from __future__ import annotations

from flows.core.resources import sql_dir
from sinks.clickhouse import ddl_statements


def test_statements_in_file_order_with_database_substituted():
    stmts = ddl_statements("mydb")
    files = [name for name, _ in stmts]
    assert files == sorted(files)
    assert files[0] == "001_database.sql"
    assert all("{database}" not in s and "mydb" in s for _, s in stmts)
    assert any("mydb.events" in s for _, s in stmts)
    assert any("mydb.dead_letters" in s for _, s in stmts)


def test_every_file_is_idempotent():
    for path in sql_dir().glob("*.sql"):
        text = path.read_text()
        assert "IF NOT EXISTS" in text, path.name
