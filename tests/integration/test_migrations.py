"""Versioned DDL: every file of sql/ is applied once and recorded; a changed applied file
is refused with a clear message; data survives re-applying."""

from __future__ import annotations

import pytest

from sinks.clickhouse import MIGRATIONS, apply_ddl


def test_files_apply_once_and_changed_ones_are_refused(ch, names) -> None:
    db = names["database"]
    files = apply_ddl(ch, db)
    assert files[0] == "001_database.sql" and "005_scores.sql" in files
    recorded = dict(ch.query(f"SELECT file, checksum FROM {db}.{MIGRATIONS} FINAL").result_rows)
    assert set(recorded) == set(files) - {"001_database.sql"}  # the database itself is created each time
    ch.command(
        f"INSERT INTO {db}.events (event_id, profile_id, type, ts) VALUES ('e1', 'p1', 'signup', now64(3))"
    )
    assert apply_ddl(ch, db) == files  # nothing new: nothing re-run, nothing lost
    assert ch.command(f"SELECT count() FROM {db}.{MIGRATIONS} FINAL") == len(recorded)
    assert ch.command(f"SELECT count() FROM {db}.events") == 1
    ch.insert(
        f"{db}.{MIGRATIONS}", [["002_events.sql", "0000000000000000"]], column_names=["file", "checksum"]
    )
    with pytest.raises(RuntimeError, match=r"002_events\.sql: changed since it was applied"):
        apply_ddl(ch, db)
