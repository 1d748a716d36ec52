"""``switchboard doctor``: one line per check, and exit 1 when any fails, against real stores."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.stdio_peer import server_env
from tests.objects.moto_process import MotoServer

REPO = Path(__file__).resolve().parents[2]


def doctor(tmp_path: Path, **env: str) -> tuple[int, dict[str, tuple[bool, str]]]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full = {name: value for name, value in server_env(tmp_path / "data", HOME=str(home), **env).items()
            if not name.startswith(("ANTHROPIC_", "CLAUDE_CODE_")) or name in env}
    done = subprocess.run([sys.executable, "-m", "server.cli", "doctor"], env=full, cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    lines: dict[str, tuple[bool, str]] = {}
    for line in done.stdout.splitlines():
        verdict, rest = line[:4], line[5:]
        name, detail = rest[:27].rstrip(), rest[28:]
        lines[name] = (verdict == "ok  ", detail)
    return done.returncode, lines


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
    assert all(ok for ok, _ in lines.values())
    assert lines["object store"][1].endswith(f"bucket {bucket!r} listed")
    assert lines["agent type tool"] == (True, "runs /bin/true")
    assert lines["claude credentials"] == (True, "from ANTHROPIC_API_KEY")
    assert {"settings", "data dir", "memory database", "agents database", "vector index", "qdrant",
            "agent type coder"} <= set(lines)


def test_each_failure_says_what_to_fix_and_fails_the_run(tmp_path: Path, moto: MotoServer) -> None:
    code, lines = doctor(tmp_path, SWITCHBOARD_AGENT_TYPES=exec_types(ghost=["no-such-tool-anywhere", "{task}"]),
                         SWITCHBOARD_S3_ENDPOINT_URL=moto.url, SWITCHBOARD_S3_REGION="us-east-1",
                         SWITCHBOARD_S3_BUCKET=f"missing-{uuid.uuid4().hex[:12]}",
                         SWITCHBOARD_S3_ADDRESSING_STYLE="path",
                         AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    assert code == 1
    assert lines["agent type ghost"] == (False, "'no-such-tool-anywhere' not found on PATH: install it or fix the "
                                                "type's command")
    assert lines["claude credentials"][0] is False and "ANTHROPIC_API_KEY" in lines["claude credentials"][1]
    assert lines["object store"][0] is False and "missing-" in lines["object store"][1]
    assert lines["memory database"][0] is True


def test_a_damaged_database_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "memory.sqlite3").write_bytes(b"this is not a database at all" * 100)
    code, lines = doctor(tmp_path, ANTHROPIC_API_KEY="sk-test")
    assert code == 1
    ok, detail = lines["memory database"]
    assert not ok and "not a database" in detail
    assert lines["services"][0] is False
