"""Settings sources and the `switchboard` command line, run as real processes where it matters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.config import Settings

REPO = Path(__file__).resolve().parents[1]


def test_toml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text('memory_max_value_bytes = 2048\nmemory_sweep_batch_size = 7\ndata_dir = "/srv/sb"\n')
    monkeypatch.setenv("SWITCHBOARD_CONFIG", str(config))
    monkeypatch.setenv("SWITCHBOARD_MEMORY_SWEEP_BATCH_SIZE", "9")
    settings = Settings()
    assert (settings.memory_max_value_bytes, settings.memory_sweep_batch_size) == (2048, 9)
    assert settings.database_path == Path("/srv/sb/memory.sqlite3")


def test_unknown_or_invalid_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text("memory_max_value_byte = 2048\n")  # a typo must not be ignored silently
    monkeypatch.setenv("SWITCHBOARD_CONFIG", str(config))
    with pytest.raises(ValidationError, match="memory_max_value_byte"):
        Settings()
    monkeypatch.setenv("SWITCHBOARD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError, match=r"missing\.toml"):
        Settings()


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_help_version_and_serve_help() -> None:
    assert "serve" in run_cli("--help").stdout
    assert "--transport {stdio,http}" in run_cli("serve", "--help").stdout
    assert run_cli("version").stdout.startswith("switchboard ")


def test_schemas_command_writes_what_is_checked_in(tmp_path: Path) -> None:
    result = run_cli("schemas", "--out", str(tmp_path))
    assert result.returncode == 0
    for path in (REPO / "schemas").glob("*.json"):
        assert json.loads((tmp_path / path.name).read_text()) == json.loads(path.read_text())


def test_serve_rejects_bad_settings_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve"], capture_output=True, text=True, cwd=REPO,
                            env={"SWITCHBOARD_MEMORY_SQLITE_SYNCHRONOUS": "sometimes", "PATH": "/usr/bin"}, timeout=60)
    assert result.returncode == 2
    assert "memory_sqlite_synchronous" in result.stderr and result.stdout == ""


def test_a_rejected_setting_is_named_but_its_value_never_echoed() -> None:
    secret = "hunter2-do-not-print"
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve"], capture_output=True, text=True, cwd=REPO,
                            env={"SWITCHBOARD_HTTP_PORT": secret, "PATH": "/usr/bin"}, timeout=60)
    assert result.returncode == 2 and "http_port" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_a_start_up_refusal_on_stdio_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "memory.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")  # a database from a newer Switchboard
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve"], capture_output=True, text=True, cwd=REPO,
                            env={"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin"},
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert "unavailable: the memory database is at schema version 99" in result.stderr
    assert "Traceback" not in result.stderr
