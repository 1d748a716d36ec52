"""Which server writes into a local object store, and removing what writers that died left behind.

A server killed part-way through an upload (SIGKILL, power loss) leaves the files of its
unfinished writes: a ``.data`` file no record names, a ``.record-*.tmp`` or a part's ``.tmp``,
and the folder of a multipart upload nobody will complete or abort. Nothing else would ever
remove them, so a store removes them when it opens, without touching what a live server in the
same data dir is writing right now:

- A store that writes first claims a *writer id* (16 hex digits) by holding an exclusive
  ``flock`` on ``<root>/.writers/<id>.lock`` until it closes. The kernel drops the lock when
  the process ends, however it ends, so a lock nobody holds is a writer that is gone; a pid
  could be reused by another process, a lock cannot.
- Every name a write creates before its commit point starts its random part with that id:
  ``<h>.<id><random>.data``, ``.record-<id><random>.tmp``, ``.<part>.<id><random>.tmp``, and a
  multipart upload's id (its folder's name) is ``<id><random>``.
- A leftover is such a file (a ``.data`` only if no record names it) or folder whose writer
  holds no lock. Names made before writer ids existed read as ids nobody holds: leftovers too.

A claim file is locked before it gets its ``.lock`` name (created as ``<id>.claim``, locked,
then renamed), so a sweeper never sees an unlocked lock file of a live writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from server.private_files import PRIVATE_FILE_MODE, make_private_dir

logger = logging.getLogger(__name__)

WRITERS_DIR = ".writers"
# Hex digits of a writer id: the start of the random part of every name a write creates.
WRITER_ID_CHARS = 16


class WriterClaim:
    """This store's writer id, claimed on first use (in a worker thread) and held until `release`."""

    def __init__(self, root: Path) -> None:
        self._directory = root / WRITERS_DIR
        self._mutex = threading.Lock()
        self._id: str | None = None
        self._closing: weakref.finalize[[int], WriterClaim] | None = None

    def writer_id(self) -> str:
        with self._mutex:
            if self._id is None:
                self._id, descriptor = _claim(self._directory)
                # A store dropped without close() still lets its lock go once it is collected.
                self._closing = weakref.finalize(self, os.close, descriptor)
            return self._id

    def release(self) -> None:
        """Gives the id up: from now on, whatever this store left unfinished is a leftover."""
        with self._mutex:
            if self._id is None or self._closing is None:
                return
            with contextlib.suppress(FileNotFoundError):
                (self._directory / f"{self._id}.lock").unlink()
            self._closing()
            self._id, self._closing = None, None


def _claim(directory: Path) -> tuple[str, int]:
    make_private_dir(directory)
    while True:
        writer = secrets.token_hex(WRITER_ID_CHARS // 2)
        claim = directory / f"{writer}.claim"
        descriptor = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(claim, directory / f"{writer}.lock")
            return writer, descriptor
        except (BlockingIOError, FileNotFoundError):
            # A sweeper took the unlocked claim for a dead one (and removes it): try another id.
            os.close(descriptor)
        except BaseException:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                claim.unlink()
            raise


@dataclass(slots=True)
class Leftovers:
    """What a sweep removed."""

    files: int = 0
    uploads: int = 0  # multipart upload folders (their files are counted in ``files``)
    bytes: int = 0


class _LiveWriters:
    """Answers "is writer X still alive?" from its lock, once per id and sweep."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._known: dict[str, bool] = {}

    def alive(self, writer: str) -> bool:
        if writer not in self._known:
            self._known[writer] = _locked(self._directory / f"{writer}.lock")
        return self._known[writer]


def _locked(path: Path) -> bool:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # also lets go of the test lock
    return False


def remove_leftovers(root: Path) -> Leftovers:
    """Removes, under ``root``, every file and multipart folder of a write whose writer is gone."""
    removed = Leftovers()
    if not root.is_dir():
        return removed
    writers = _LiveWriters(root / WRITERS_DIR)
    for bucket_dir in sorted(root.iterdir()):
        if bucket_dir.name.startswith(".") or not bucket_dir.is_dir():
            continue
        objects = bucket_dir / "objects"
        for shard in sorted(objects.iterdir()) if objects.is_dir() else ():
            if shard.is_dir():
                _sweep_shard(shard, writers, removed)
        uploads = bucket_dir / "multipart"
        for upload_dir in sorted(uploads.iterdir()) if uploads.is_dir() else ():
            if not writers.alive(upload_dir.name[:WRITER_ID_CHARS]):
                _remove_tree(upload_dir, removed)
            elif upload_dir.is_dir():
                for temp in upload_dir.glob(".*.tmp"):  # .<part>.<id><random>.tmp, .record-<id><random>.tmp
                    if not writers.alive(_temp_writer(temp.name)):
                        _remove_file(temp, removed)
    _forget_dead_writers(root / WRITERS_DIR)
    return removed


def _sweep_shard(shard: Path, writers: _LiveWriters, removed: Leftovers) -> None:
    names = [path.name for path in shard.iterdir()]
    referenced = _data_files_named(shard, names)
    for name in names:
        if name.endswith(".data"):
            if referenced is None or name in referenced:
                continue
            parts = name.split(".")
            writer = parts[1][:WRITER_ID_CHARS] if len(parts) >= 3 else ""
        elif name.startswith(".record-") and name.endswith(".tmp"):
            writer = _temp_writer(name)
        else:
            continue
        if not writers.alive(writer):
            _remove_file(shard / name, removed)


def _data_files_named(shard: Path, names: list[str]) -> set[str] | None:
    """The data files the shard's records name; None if a record cannot be read (then none is a leftover)."""
    referenced: set[str] = set()
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            record = json.loads((shard / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue  # replaced meanwhile: the new record names a live writer's data
        except (ValueError, OSError) as error:
            logger.warning("local object store: cannot read %s (%s); the data files beside it are left as they are",
                           shard / name, error)
            return None
        if isinstance(record, dict) and isinstance(record.get("data"), str):
            referenced.add(record["data"])
    return referenced


def _temp_writer(name: str) -> str:
    """The writer id in ``.record-<id><random>.tmp`` or ``.<part>.<id><random>.tmp``."""
    if name.startswith(".record-"):
        return name[len(".record-"):][:WRITER_ID_CHARS]
    parts = name.split(".")
    return parts[2][:WRITER_ID_CHARS] if len(parts) >= 4 else ""


def _remove_file(path: Path, removed: Leftovers) -> None:
    try:
        size = path.lstat().st_size
        path.unlink()
    except FileNotFoundError:
        return  # another sweeper was first
    except OSError as error:
        logger.warning("local object store: could not remove the leftover %s (%s)", path, error)
        return
    removed.files += 1
    removed.bytes += size


def _remove_tree(directory: Path, removed: Leftovers) -> None:
    files = size = 0
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                files, size = files + 1, size + path.lstat().st_size
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        logger.warning("local object store: could not remove all of the leftover upload %s", directory)
        return
    removed.files += files
    removed.uploads += 1
    removed.bytes += size


def _forget_dead_writers(directory: Path) -> None:
    """Removes the lock and claim files nobody holds: their writers' leftovers are gone now."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.suffix not in (".lock", ".claim"):
            continue
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)  # while locked: a claim renamed meanwhile is not ours to judge
        except BlockingIOError:
            pass
        finally:
            os.close(descriptor)
