"""How a failure to use the data directory is explained, for a failure that needs no special machine."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.startup_errors import explain_startup_failure


def test_a_full_database_is_said_to_be_full_not_an_io_error(tmp_path: Path) -> None:
    database = tmp_path / "memory.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA max_page_count = 2")  # SQLite then fails writes with SQLITE_FULL
        with pytest.raises(sqlite3.OperationalError) as raised:
            conn.execute("CREATE TABLE a (x)")
            conn.execute("CREATE TABLE b (x)")
            conn.execute("CREATE TABLE c (x)")
    said = explain_startup_failure(raised.value, tmp_path, database)
    assert str(database) in said and "full" in said and str(tmp_path) in said and "disk I/O" not in said
