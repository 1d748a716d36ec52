"""`GitRepository`: the git operations an agent's workspace needs, run as ``git`` argv (never a shell).

A workspace is a worktree of the user's repository on a branch of its own. Its work is committed
on that branch (`commit_all`), read back as a summary and a bounded diff (`changes`), and merged
into another branch (`merge`) without ever leaving the user's repository conflicted or touching
their checkout: the merge is made in a temporary worktree, and the target branch moves only when
it succeeded (a compare-and-set of the ref on the commit the merge started from).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from server.errors import Conflict, InvalidArgument, SwitchboardError

MergeStrategy = Literal["merge", "squash", "rebase"]
# What of a failing git's stderr an error carries.
ERROR_TAIL_CHARS = 2_000
# A fixed identity for commits made on an agent's behalf when none is configured, and no
# dependence on the server user's git configuration (or its absence) for them.
DEFAULT_AUTHOR = ("Switchboard agent", "switchboard@localhost")


class GitFailed(SwitchboardError):
    """git refused or failed; the message names the command and ends with git's own words."""

    code = "unavailable"


@dataclass(frozen=True, slots=True)
class ChangedFile:
    path: str
    status: str  # git's letter: A added, M modified, D deleted, R renamed, ...
    added: int | None  # None for a binary file
    removed: int | None


@dataclass(frozen=True, slots=True)
class Changes:
    """What a branch holds beyond its base."""

    branch: str
    base: str
    head: str
    commits: list[str]  # "<short sha> <subject>", oldest first
    files: list[ChangedFile]
    merges_cleanly: bool
    conflicted: list[str] = field(default_factory=list)
    diff: str | None = None
    diff_truncated: bool = False


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    into: str
    strategy: MergeStrategy
    before: str
    after: str  # equal to ``before`` for a dry run
    dry_run: bool


async def git(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> tuple[int, str, str]:
    """Runs ``git <args>`` in ``cwd``; answers (exit code, stdout, stderr); `GitFailed` when it
    fails and ``check`` is set."""
    environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=environment, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    code = process.returncode if process.returncode is not None else -1
    stdout, stderr = out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace")
    if check and code != 0:
        raise GitFailed(f"git {' '.join(args[:3])} failed (exit {code}): {stderr.strip()[-ERROR_TAIL_CHARS:]}")
    return code, stdout, stderr


class GitRepository:
    """One repository, by its top-level directory (the main worktree)."""

    def __init__(self, top: Path) -> None:
        self.top = top

    @classmethod
    async def containing(cls, path: Path) -> GitRepository:
        """The repository whose work tree holds ``path``; `InvalidArgument` when none does."""
        try:
            code, out, _ = await git(path, "rev-parse", "--show-toplevel", check=False)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidArgument(f"cwd {path} is not a directory") from None
        if code != 0 or not out.strip():
            raise InvalidArgument(f"cwd {path} is not in a git repository (workspace 'worktree' needs one; "
                                  "use workspace 'shared', or git init it)")
        return cls(Path(out.strip()))

    async def commit_of(self, ref: str) -> str:
        """The commit ``ref`` names (a branch, a tag, a sha); `InvalidArgument` when it names none."""
        if ref.startswith("-"):
            raise InvalidArgument(f"base_ref {ref!r} is not a ref")
        code, out, _ = await git(self.top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if code != 0:
            raise InvalidArgument(f"{ref!r} names no commit in {self.top}")
        return out.strip()

    async def is_branch(self, name: str) -> bool:
        """Whether ``name`` is a local branch."""
        if not name or name.startswith("-"):
            return False
        code, _, _ = await git(self.top, "show-ref", "--verify", "--quiet", f"refs/heads/{name}", check=False)
        return code == 0

    async def current_branch(self) -> str | None:
        """The branch checked out in the main worktree (None when HEAD is detached)."""
        code, out, _ = await git(self.top, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return out.strip() if code == 0 else None

    # -- worktrees -----------------------------------------------------------------------------

    async def add_worktree(self, path: Path, branch: str, base_commit: str) -> None:
        """A new worktree at ``path`` on a new ``branch`` starting at ``base_commit``; `Conflict` when
        the branch exists already (git refuses, changing nothing)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        code, _, err = await git(self.top, "worktree", "add", "--quiet", "-b", branch, str(path), base_commit,
                                 check=False)
        if code != 0 and "a branch named" in err:
            raise Conflict(f"branch {branch} exists already in {self.top}")
        if code != 0:
            raise GitFailed(f"git worktree add failed (exit {code}): {err.strip()[-ERROR_TAIL_CHARS:]}")

    async def remove_worktree(self, path: Path) -> None:
        """Removes the worktree (its branch stays, and with it every commit on it)."""
        await git(self.top, "worktree", "remove", "--force", str(path))

    async def prune_worktrees(self) -> None:
        await git(self.top, "worktree", "prune")

    async def commit_all(self, worktree: Path, message: str, author: tuple[str, str] = DEFAULT_AUTHOR) -> str | None:
        """Commits everything uncommitted in ``worktree`` (new, changed and deleted files); answers
        the new commit, or None when there was nothing to commit."""
        await git(worktree, "add", "--all")
        code, _, _ = await git(worktree, "diff", "--cached", "--quiet", check=False)
        if code == 0:
            return None
        await git(worktree, "commit", "--quiet", "--no-verify", "-m", message, env=_identity(author))
        _, out, _ = await git(worktree, "rev-parse", "HEAD")
        return out.strip()

    # -- reading a branch ----------------------------------------------------------------------

    async def changes(self, branch: str, base: str, *, into: str | None = None, include_diff: bool = False,
                      max_diff_bytes: int = 64 * 1024) -> Changes:
        """What ``branch`` holds beyond ``base`` (a commit), and whether it merges cleanly into
        ``into`` (default: ``base``) as that branch is now."""
        head = await self.commit_of(branch)
        _, log, _ = await git(self.top, "log", "--reverse", "--format=%h %s", f"{base}..{head}")
        _, numstat, _ = await git(self.top, "diff", "--numstat", "-z", "--no-renames", base, head)
        _, names, _ = await git(self.top, "diff", "--name-status", "-z", "--no-renames", base, head)
        statuses = _name_statuses(names)
        files = []
        for path, added, removed in _numstats(numstat):
            files.append(ChangedFile(path, statuses.get(path, "M"), added, removed))
        clean, conflicted = await self._merges_cleanly(await self.commit_of(into or base), head)
        diff, truncated = None, False
        if include_diff:
            _, text, _ = await git(self.top, "diff", "--no-color", base, head)
            encoded = text.encode()
            truncated = len(encoded) > max_diff_bytes
            diff = encoded[:max_diff_bytes].decode("utf-8", errors="ignore") if truncated else text
        return Changes(branch, base, head, [line for line in log.splitlines() if line], files, clean, conflicted,
                       diff, truncated)

    async def _merges_cleanly(self, target: str, head: str) -> tuple[bool, list[str]]:
        """Whether ``head`` merges into ``target`` without conflicts, and which files would conflict
        (``git merge-tree --write-tree``: computed in the object store, no work tree touched)."""
        code, out, _ = await git(self.top, "merge-tree", "--write-tree", "--name-only", "--no-messages", target, head,
                                 check=False)
        if code == 0:
            return True, []
        if code == 1:
            return False, [line for line in out.splitlines()[1:] if line]
        raise GitFailed(f"git merge-tree failed (exit {code}) for {head} into {target}")

    # -- merging -------------------------------------------------------------------------------

    async def merge(self, branch: str, into: str, *, strategy: MergeStrategy = "merge", message: str | None = None,
                    dry_run: bool = False, author: tuple[str, str] = DEFAULT_AUTHOR) -> MergeOutcome:
        """Merges ``branch`` into the branch ``into``, made in a temporary worktree; the target moves
        only when the merge succeeded and nobody moved it meanwhile. A conflict is `Conflict` naming
        the files, and nothing changed. When ``into`` is checked out in the main worktree, that
        checkout must be clean, and it is brought forward with the branch."""
        before = await self.commit_of(f"refs/heads/{into}")
        head = await self.commit_of(branch)
        clean, conflicted = await self._merges_cleanly(before, head)
        if not clean:
            raise Conflict(f"{branch} does not merge cleanly into {into}: conflicts in {', '.join(conflicted) or '?'}; "
                           f"nothing was changed")
        checked_out = await self.current_branch() == into
        if checked_out:
            _, dirty, _ = await git(self.top, "status", "--porcelain", "--untracked-files=no")
            if dirty.strip():
                raise Conflict(f"{into} is checked out in {self.top} with uncommitted changes; commit or stash them "
                               "first (nothing was changed)")
        if dry_run:
            return MergeOutcome(into, strategy, before, before, True)
        after = await self._merged_commit(before, branch, head, strategy, message or f"Merge {branch} into {into}",
                                          author)
        if checked_out:
            # The checkout and its branch move together, fast-forward only: git refuses (changing
            # nothing) when the branch moved meanwhile or an untracked file would be overwritten.
            code, _, err = await git(self.top, "merge", "--quiet", "--ff-only", after, check=False)
            if code != 0:
                raise Conflict(f"{into} could not be brought forward in {self.top}; nothing was changed: "
                               f"{err.strip()[-ERROR_TAIL_CHARS:]}")
        else:
            # Compare-and-set: the ref moves only from the commit the merge was made on.
            code, _, _ = await git(self.top, "update-ref", "-m", f"switchboard: {strategy} {branch}",
                                   f"refs/heads/{into}", after, before, check=False)
            if code != 0:
                raise Conflict(f"{into} moved while {branch} was being merged into it; nothing was changed, try again")
        return MergeOutcome(into, strategy, before, after, False)

    async def _merged_commit(self, target: str, branch: str, head: str, strategy: MergeStrategy, message: str,
                             author: tuple[str, str]) -> str:
        identity = _identity(author)
        scratch = Path(tempfile.mkdtemp(prefix="switchboard-merge-"))
        place = scratch / "tree"
        await git(self.top, "worktree", "add", "--quiet", "--detach", str(place), target)
        try:
            if strategy == "merge":
                await git(place, "merge", "--quiet", "--no-ff", "--no-verify", "-m", message, head, env=identity)
            elif strategy == "squash":
                await git(place, "merge", "--quiet", "--squash", head, env=identity)
                await git(place, "commit", "--quiet", "--no-verify", "-m", message, env=identity)
            else:
                await git(place, "checkout", "--quiet", "--detach", head)
                await git(place, "rebase", "--quiet", target, env=identity)
            _, out, _ = await git(place, "rev-parse", "HEAD")
            return out.strip()
        except GitFailed as error:
            raise Conflict(f"{strategy} of {branch} failed; nothing was changed: {error.message}") from error
        finally:
            await git(self.top, "worktree", "remove", "--force", str(place), check=False)
            shutil.rmtree(scratch, ignore_errors=True)


def _identity(author: tuple[str, str]) -> dict[str, str]:
    """The environment that makes ``author`` both author and committer of what git commits."""
    name, email = author
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


def _numstats(text: str) -> list[tuple[str, int | None, int | None]]:
    """``git diff --numstat -z`` (without renames): "added<TAB>removed<TAB>path" records."""
    rows = []
    for record in text.split("\0"):
        if not record:
            continue
        added, removed, path = record.split("\t", 2)
        rows.append((path, None if added == "-" else int(added), None if removed == "-" else int(removed)))
    return rows


def _name_statuses(text: str) -> dict[str, str]:
    """``git diff --name-status -z`` (without renames): status and path, alternating."""
    parts: Sequence[str] = [part for part in text.split("\0") if part]
    return {parts[index + 1]: parts[index][0] for index in range(0, len(parts) - 1, 2)}
