"""Owner-only directories and files for what the server keeps under its data directory.

The data directory holds secrets: memory values (a client may store an S3 key there), agents'
records and output. So each directory the server creates there is 0700 and each file 0600 from
the moment it exists, never readable by another local user, not even for an instant.

The modes are set on each path, never through the process umask: agents are child processes and
inherit the umask, and the files they write in users' projects must keep their usual permissions.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Bits that let someone other than the owner read, write or enter a path.
OTHERS_BITS = stat.S_IRWXG | stat.S_IRWXO


def make_private_dir(path: Path) -> None:
    """Create ``path`` and each missing parent, 0700; a directory that exists keeps its mode (it
    is the operator's to set: `doctor` says when the data directory's is too loose)."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process created it meanwhile; a file in the way fails the next step
        os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask


def create_private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (then it is left as it is).

    For an SQLite database before its first connection: SQLite opens an empty file as an empty
    database, and gives its -wal, -shm and journal files the main file's mode."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)  # O_CREAT's mode passes through the umask
    finally:
        os.close(descriptor)


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (created or truncated), which is 0600 before any byte is in it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                         PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)  # also when the file was there already
        file.write(text)


def looser_than_private(path: Path) -> int | None:
    """The permission bits of ``path`` when another user may use it (any group or other bit), else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & OTHERS_BITS else None
