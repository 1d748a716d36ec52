"""A data directory the real ``switchboard serve`` cannot use: one line on stderr naming the path and
the cause, a non-zero exit, nothing on stdout, no traceback; over stdio and over HTTP.

File permissions do not stop root. Run as root, the server runs under ``setpriv`` without the
capabilities that bypass them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so chmod applies to it
as to anyone; where that is impossible (no setpriv, or no right to drop capabilities), only the
chmod cases are skipped, saying why. A full disk is a file-size limit (RLIMIT_FSIZE, with
SIGXFSZ ignored, so a write past it fails with EFBIG, as on a full disk SQLite calls it a
"disk I/O error").
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.stdio_peer import DEADLINE_SECONDS, serve_command, server_env

REPO = Path(__file__).resolve().parents[2]
DROP_PERMISSION_OVERRIDES = ["--bounding-set", "-dac_override,-dac_read_search"]
FILE_SIZE_LIMIT = 16384
# Runs the server with writes past FILE_SIZE_LIMIT bytes failing (EFBIG) instead of killing it (SIGXFSZ).
WITH_FILE_SIZE_LIMIT = [
    sys.executable, "-c",
    "import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({FILE_SIZE_LIMIT}, {FILE_SIZE_LIMIT})); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]


def permissions_apply() -> list[str]:
    """A command prefix under which file permissions bind the server, or a skip saying why there is none."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, where chmod does not deny access, and setpriv is not installed")
    probe = subprocess.run([setpriv, *DROP_PERMISSION_OVERRIDES, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"running as root, where chmod does not deny access, and setpriv cannot drop "
                    f"capabilities here: {probe.stderr.decode().strip()}")
    return [setpriv, *DROP_PERMISSION_OVERRIDES]


def used_data_dir(tmp_path: Path) -> Path:
    """A data directory a server has already used (it holds a database)."""
    data_dir = tmp_path / "data"
    done = subprocess.run(serve_command(), env=server_env(data_dir), cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=DEADLINE_SECONDS, check=False)
    assert done.returncode == 0 and (data_dir / "memory.sqlite3").exists(), done.stderr
    return data_dir


def read_only_dir(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    data_dir = used_data_dir(tmp_path)
    for path in (data_dir, *data_dir.iterdir()):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return data_dir, permissions_apply(), [str(data_dir), "read-only"]


def read_only_database(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    data_dir = used_data_dir(tmp_path)
    (data_dir / "memory.sqlite3").chmod(0o444)  # SQLite: "attempt to write a readonly database"
    return data_dir, permissions_apply(), [str(data_dir / "memory.sqlite3"), "read-only"]


def unopenable_dir(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o000)
    return data_dir, permissions_apply(), [str(data_dir), "may not open it", "Permission denied"]


def regular_file(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")
    return data_dir, [], [str(data_dir), "not a directory"]


def full_disk(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    data_dir = tmp_path / "data"
    return data_dir, WITH_FILE_SIZE_LIMIT, [str(data_dir / "memory.sqlite3"), "file-size limit", "ulimit -f"]


Scenario = Callable[[Path], tuple[Path, list[str], list[str]]]


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("scenario", [read_only_dir, read_only_database, unopenable_dir, regular_file, full_disk],
                         ids=lambda scenario: scenario.__name__)
def test_an_unusable_data_dir_is_refused_in_one_line_naming_the_path_and_the_cause(
    tmp_path: Path, scenario: Scenario, transport: str
) -> None:
    data_dir, prefix, said = scenario(tmp_path)
    command = [*prefix, *serve_command()]
    if prefix == WITH_FILE_SIZE_LIMIT:
        command = [*prefix, *serve_command()[1:]]  # the launcher execs the interpreter itself
    if transport == "http":
        command += ["--transport", "http", "--port", "0"]
    try:
        result = subprocess.run(command, env={**server_env(data_dir), "PYTHONDONTWRITEBYTECODE": "1"}, cwd=REPO,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DEADLINE_SECONDS,
                                check=False)
    finally:
        for path in (data_dir, *(data_dir.iterdir() if data_dir.is_dir() else ())):
            path.chmod(0o700)  # so pytest can clean up
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and all(piece in errors[0] for piece in said), result.stderr

