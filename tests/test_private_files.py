"""Owner-only directories and files, made under the usual umask 022, with real files and SQLite."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.private_files import create_private_file, looser_than_private, make_private_dir, write_private_text


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    # A strict umask would make every check pass whatever the code does.
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_directories_are_made_0700_and_an_existing_one_keeps_its_mode(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    make_private_dir(existing / "a" / "b")
    assert (mode(existing / "a"), mode(existing / "a" / "b")) == (0o700, 0o700)
    assert mode(existing) == 0o755
    make_private_dir(existing / "a")  # again: nothing to do, nothing raised
    assert mode(existing / "a") == 0o700


def test_a_database_made_private_keeps_its_wal_and_shm_private(tmp_path: Path) -> None:
    database = tmp_path / "memory.sqlite3"
    create_private_file(database)
    with sqlite3.connect(database) as conn:  # SQLite takes the empty file for an empty database
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE secrets (value TEXT)")
        conn.execute("INSERT INTO secrets VALUES ('wJalrXUtnFEMI')")
        conn.commit()
        assert {path.name: mode(path) for path in tmp_path.iterdir()} == {
            "memory.sqlite3": 0o600, "memory.sqlite3-wal": 0o600, "memory.sqlite3-shm": 0o600}
        assert conn.execute("SELECT value FROM secrets").fetchall() == [("wJalrXUtnFEMI",)]


def test_an_existing_file_is_neither_emptied_nor_changed(tmp_path: Path) -> None:
    database = tmp_path / "agents.sqlite3"
    database.write_bytes(b"rows")
    database.chmod(0o640)
    create_private_file(database)
    assert (database.read_bytes(), mode(database)) == (b"rows", 0o640)


def test_written_text_is_private_even_over_a_readable_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("old and longer")
    state.chmod(0o644)
    write_private_text(state, "{}")
    assert (state.read_text(), mode(state)) == ("{}", 0o600)


def test_a_loose_mode_is_reported_and_a_private_one_is_not(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    assert looser_than_private(tmp_path) == 0o755
    tmp_path.chmod(0o700)
    assert looser_than_private(tmp_path) is None
