"""``switchboard doctor``: one line per check (ok, warn or FAIL), and exit 1 when any fails, against real stores."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.stdio_peer import server_env
from tests.objects.moto_process import MotoServer

REPO = Path(__file__).resolve().parents[2]


def doctor_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment of a doctor run: a fresh HOME, no Claude credentials but those in ``env``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {name: value for name, value in server_env(tmp_path / "data", HOME=str(home), **env).items()
            if not name.startswith(("ANTHROPIC_", "CLAUDE_CODE_")) or name in env}


def doctor(tmp_path: Path, **env: str) -> tuple[int, dict[str, tuple[str, str]]]:
    """Its exit code, and each check's verdict (ok, warn, FAIL) and detail by name."""
    done = subprocess.run([sys.executable, "-m", "server.cli", "doctor"], env=doctor_env(tmp_path, **env), cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    lines: dict[str, tuple[str, str]] = {}
    for line in done.stdout.splitlines():
        verdict, rest = line[:4].rstrip(), line[5:]
        name, detail = rest[:27].rstrip(), rest[28:]
        lines[name] = (verdict, detail)
    return done.returncode, lines


def doctor_on_terminal(tmp_path: Path, columns: int) -> list[str]:
    """What doctor shows on a terminal ``columns`` wide (stdout and stderr both on it, as a person
    runs it), as lines of text with the spinner's control sequences taken out."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "doctor"], env=doctor_env(tmp_path, TERM="xterm"),
                               cwd=REPO, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: every holder of the terminal has closed it
                    break
                if not chunk:
                    break
                shown += chunk
    finally:
        os.close(controller)
        process.wait(timeout=30)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode("utf-8", errors="replace"))
    return [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]


def exec_types(**commands: list[str]) -> str:
    return json.dumps({name: {"runtime": "exec", "command": command} for name, command in commands.items()})


def test_a_healthy_setup_passes_every_check(tmp_path: Path, moto: MotoServer, s3_admin: Any) -> None:
    bucket = f"doctor-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    code, lines = doctor(tmp_path, ANTHROPIC_API_KEY="sk-test", SWITCHBOARD_AGENT_TYPES=exec_types(tool=["/bin/true"]),
                         SWITCHBOARD_S3_ENDPOINT_URL=moto.url, SWITCHBOARD_S3_REGION="us-east-1",
                         SWITCHBOARD_S3_BUCKET=bucket, SWITCHBOARD_S3_ADDRESSING_STYLE="path",
                         AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    assert code == 0, lines
    assert all(verdict == "ok" for verdict, _ in lines.values()), lines
    assert lines["object store"][1].endswith(f"bucket {bucket!r} listed")
    assert lines["agent type tool"] == ("ok", "runs /bin/true")
    assert lines["claude credentials"] == ("ok", "from ANTHROPIC_API_KEY")
    assert lines["data dir access"] == ("ok", f"{tmp_path / 'data'} is private to its owner")
    assert {"settings", "data dir", "memory database", "agents database", "vector index", "qdrant",
            "agent type coder"} <= set(lines)


def test_each_failure_says_what_to_fix_and_fails_the_run(tmp_path: Path, moto: MotoServer) -> None:
    code, lines = doctor(tmp_path, SWITCHBOARD_AGENT_TYPES=exec_types(ghost=["no-such-tool-anywhere", "{task}"]),
                         SWITCHBOARD_S3_ENDPOINT_URL=moto.url, SWITCHBOARD_S3_REGION="us-east-1",
                         SWITCHBOARD_S3_BUCKET=f"missing-{uuid.uuid4().hex[:12]}",
                         SWITCHBOARD_S3_ADDRESSING_STYLE="path",
                         AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    assert code == 1
    assert lines["agent type ghost"] == ("FAIL", "'no-such-tool-anywhere' not found on PATH: install it or fix the "
                                                 "type's command")
    assert lines["object store"][0] == "FAIL" and "missing-" in lines["object store"][1]
    assert lines["memory database"][0] == "ok"


def test_missing_claude_credentials_warn_and_the_run_still_passes(tmp_path: Path) -> None:
    # Exec agents need no credentials: a server running only those is healthy without any.
    code, lines = doctor(tmp_path, SWITCHBOARD_AGENT_TYPES=exec_types(tool=["/bin/true"]))
    assert code == 0, lines
    verdict, detail = lines["claude credentials"]
    assert verdict == "warn"
    assert "claude agents will not be able to call the model until credentials are set" in detail
    assert "set ANTHROPIC_API_KEY" in detail and "run `claude` once to log in" in detail
    assert all(verdict == "ok" for name, (verdict, _) in lines.items() if name != "claude credentials"), lines


def test_a_data_dir_others_can_read_is_a_warning_naming_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)  # as servers made it before data directories were owner-only
    code, lines = doctor(tmp_path, ANTHROPIC_API_KEY="sk-test")
    assert code == 0, lines
    assert lines["data dir access"] == ("warn", f"{data} is mode 0755: other local users can read the databases "
                                                f"and logs in it; run `chmod 700 {data}`")
    assert data.stat().st_mode & 0o777 == 0o755  # the operator's to change, not doctor's


def test_a_long_path_stays_on_its_line_on_a_narrow_terminal(tmp_path: Path) -> None:
    lines = doctor_on_terminal(tmp_path, columns=80)
    [coder] = [line for line in lines if line.startswith("ok   agent type coder ")]
    path = coder.split("Claude Code at ", 1)[1]
    assert Path(path).is_file(), coder  # the whole path, not the part of it that fit in 80 columns
    assert path.endswith("claude")


def test_a_damaged_database_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "memory.sqlite3").write_bytes(b"this is not a database at all" * 100)
    code, lines = doctor(tmp_path, ANTHROPIC_API_KEY="sk-test")
    assert code == 1
    verdict, detail = lines["memory database"]
    assert verdict == "FAIL" and "not a database" in detail
    assert lines["services"][0] == "FAIL"
