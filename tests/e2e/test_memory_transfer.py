"""``switchboard memory export`` / ``import``: a round trip between two data directories keeps
values, versions, tags, absolute expiry and (rebuilt) vectors; an import never overwrites."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server.config import Settings
from server.services import open_services
from tests.e2e.stdio_peer import server_env

REPO = Path(__file__).resolve().parents[2]


def switchboard(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "server.cli", "memory", *args], env=server_env(data_dir), cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done


async def test_export_then_import_keeps_entries_and_skips_what_it_must(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    async with open_services(Settings(data_dir=source)) as services:
        memory = services.memory
        await memory.put("notes", "plan", {"step": 1}, tags=["draft"])
        await memory.put("notes", "plan", {"step": 2}, tags=["final", "team"])  # version 2
        await memory.put("notes", "soon", "expires in an hour", ttl_seconds=3600)
        await memory.put("facts", "bug", "the parser drops the last header line")
        originals = {(e.namespace, e.key): e for e in await memory.export_page()}
    assert len(originals) == 3

    exported = tmp_path / "memory.jsonl"
    switchboard(source, "export", "-o", str(exported))
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [(line["namespace"], line["key"]) for line in lines] == [("facts", "bug"), ("notes", "plan"),
                                                                    ("notes", "soon")]
    only_notes = switchboard(source, "export", "--namespace", "notes").stdout.splitlines()
    assert [json.loads(line)["key"] for line in only_notes] == ["plan", "soon"]

    imported = switchboard(target, "import", str(exported))
    assert imported.stdout == "imported 3 entries, skipped 0\n"
    async with open_services(Settings(data_dir=target)) as services:
        copies = {(e.namespace, e.key): e for e in await services.memory.export_page()}
        hits = await services.memory.search_semantic("parser header line", k=1)
    assert copies == originals  # values, versions, tags, created/updated and absolute expiry
    assert [hit.entry.key for hit in hits] == ["bug"]  # vectors made again from the values

    # Again, with a malformed line and an entry that has expired since: nothing is overwritten.
    expired = {**lines[0], "key": "old", "expires_ms": 1000}
    exported.write_text(exported.read_text() + "not json\n" + json.dumps(expired) + "\n")
    again = switchboard(target, "import", str(exported), "--chunk", "2")
    assert again.stdout.splitlines()[0] == ("imported 0 entries, skipped 5: 3 a live entry holds this key, "
                                            "1 not an exported entry (JSONDecodeError: Expecting value: line 1 "
                                            "column 1 (char 0)), 1 expired")
    assert "  skipped facts/old: expired" in again.stdout
    async with open_services(Settings(data_dir=target)) as services:
        assert {(e.namespace, e.key): e for e in await services.memory.export_page()} == originals
