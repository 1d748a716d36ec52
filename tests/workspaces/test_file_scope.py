"""`FileScope`: where a sandboxed claude agent's file tools may go, links resolved and the data directory
never readable through a read root that holds it."""

from __future__ import annotations

from pathlib import Path

from server.agents.file_scope import FileScope


def test_writes_stay_in_the_workspace_and_reads_in_it_and_the_read_roots(tmp_path: Path) -> None:
    workspace, docs, data = tmp_path / "data" / "workspaces" / "a", tmp_path / "docs", tmp_path / "data"
    workspace.mkdir(parents=True)
    docs.mkdir()
    scope = FileScope(workspace, (workspace,), (tmp_path,), (data,))
    assert scope.refusal("Write", {"file_path": "src/new.py"}) is None  # relative: in the workspace
    assert scope.refusal("Edit", {"file_path": str(workspace / "a.py")}) is None
    assert scope.refusal("Read", {"file_path": str(docs / "guide.md")}) is None
    assert scope.refusal("Grep", {"pattern": "x"}) is None  # no path: its cwd
    refused = scope.refusal("Write", {"file_path": str(docs / "guide.md")})
    assert refused is not None and "may write only in its workspace" in refused
    assert scope.refusal("Read", {"file_path": str(data / "agents.sqlite3")}) is not None
    assert scope.refusal("Read", {"file_path": "../../agents.sqlite3"}) is not None
    assert scope.refusal("Read", {"file_path": "/etc/passwd"}) is not None
    assert scope.refusal("Bash", {"command": "cat /etc/passwd"}) is None  # Bash is the Bash sandbox's
    (workspace / "link").symlink_to("/etc")
    assert scope.refusal("Edit", {"file_path": "link/hosts"}) is not None  # the link leads out
