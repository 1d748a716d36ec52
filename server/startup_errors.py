"""A data directory the server cannot use, said in one line that names the path and the cause.

Opening the stores fails with whatever the OS or SQLite raised: "attempt to write a readonly
database", "unable to open database file", or "disk I/O error", which is what SQLite says
when a write fails for lack of space and misleads. `open_services_or_refuse` turns such a
failure into an `Unavailable` error saying which path, what is wrong, and what to do; the
command line prints it instead of a traceback and exits non-zero.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import resource
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from server.clock import Clock
from server.config import Settings
from server.errors import Unavailable
from server.private_files import make_private_dir
from server.services import Services, open_services

# Free space below this, next to a failed write, is taken to be why it failed.
NEARLY_FULL_BYTES = 64 * 1024 * 1024


@contextlib.asynccontextmanager
async def open_services_or_refuse(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Services]:
    """`open_services`, with a failure to use the data directory raised as one clear `Unavailable`."""
    # Checked first, so the common refusals do not depend on how each store fails (aiosqlite, for
    # one, leaves a thread behind when it cannot open a file).
    if (problem := check_data_dir(settings.data_dir)) is not None:
        raise Unavailable(problem)
    async with contextlib.AsyncExitStack() as stack:
        try:
            services = await stack.enter_async_context(open_services(settings, clock))
        except (OSError, sqlite3.Error) as error:
            raise Unavailable(explain_startup_failure(error, settings.data_dir, settings.database_path)) from error
        yield services


def check_data_dir(data_dir: Path) -> str | None:
    """Create ``data_dir`` if needed and try to list it and write in it; what went wrong, or None."""
    try:
        make_private_dir(data_dir)
    except OSError as error:
        return _explain_os_error(error, data_dir)
    if (problem := _directory_problem(data_dir)) is not None:
        return f"cannot use the data directory {data_dir}: {problem}; {_remedy(data_dir)}"
    return None


def explain_startup_failure(error: OSError | sqlite3.Error, data_dir: Path, database: Path) -> str:
    """Why the data directory cannot be used, naming the path, in one line."""
    if isinstance(error, sqlite3.Error):
        return _explain_sqlite(error, data_dir, database)
    return _explain_os_error(error, data_dir)


def _explain_sqlite(error: sqlite3.Error, data_dir: Path, database: Path) -> str:
    name = getattr(error, "sqlite_errorname", "")  # SQLITE_READONLY, SQLITE_IOERR_WRITE, ...
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        # When the directory itself is usable, the database file is what is not.
        problem = _directory_problem(data_dir) or (
            f"{database} is read-only for this user ({_user()})" if name.startswith("SQLITE_READONLY")
            else f"SQLite cannot open {database} ({error}); check its owner and mode")
        return f"cannot use the data directory {data_dir}: {problem}; {_remedy(data_dir)}"
    if name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR"):
        return f"cannot write the database {database}: {_why_writes_fail(data_dir, error)}"
    return f"cannot use the database {database}: {error} ({name or type(error).__name__})"


def _explain_os_error(error: OSError, data_dir: Path) -> str:
    path = error.filename or data_dir
    match error.errno:
        case errno.EACCES | errno.EPERM:
            problem = f"permission denied on {path}; {_remedy(data_dir)}"
        case errno.EROFS:
            problem = f"{path} is on a read-only file system; set SWITCHBOARD_DATA_DIR to a writable directory"
        case errno.ENOSPC | errno.EDQUOT | errno.EFBIG:
            problem = _why_writes_fail(data_dir, error)
        case errno.EEXIST | errno.ENOTDIR:
            problem = f"{path} is not a directory; set SWITCHBOARD_DATA_DIR to a directory (it is created if missing)"
        case _:
            problem = f"{path}: {error.strerror or error}"
    return f"cannot use the data directory {data_dir}: {problem}"


def _directory_problem(data_dir: Path) -> str | None:
    """What keeps this user from reading and writing ``data_dir``, found by trying; None if nothing does."""
    if not data_dir.is_dir():
        return "it is not a directory" if data_dir.exists() else "it does not exist"
    try:
        os.listdir(data_dir)
    except OSError as error:
        return f"this user ({_user()}) may not open it ({error.strerror or error})"
    try:
        with tempfile.TemporaryFile(dir=data_dir, prefix=".switchboard-probe-"):
            pass
    except OSError as error:
        if error.errno == errno.EROFS:
            return "it is on a read-only file system"
        if error.errno in (errno.EACCES, errno.EPERM):
            return f"it is read-only for this user ({_user()})"
        return f"creating a file in it failed ({error.strerror or error})"
    return None


def _why_writes_fail(data_dir: Path, error: BaseException) -> str:
    """SQLite says "disk I/O error" for most failed writes, whatever the cause: find the likely one."""
    soft_limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft_limit != resource.RLIM_INFINITY:
        return (f"writing failed ({error}): this process may not write files larger than {soft_limit:,} bytes "
                "(its file-size limit, `ulimit -f`); raise the limit")
    with contextlib.suppress(OSError):
        stats = os.statvfs(data_dir)
        free = stats.f_bavail * stats.f_frsize
        if free < NEARLY_FULL_BYTES:
            return (f"the disk is full ({error}): the file system holding {data_dir} has {free:,} bytes free; "
                    "free some space, or set SWITCHBOARD_DATA_DIR to another disk")
        if getattr(error, "sqlite_errorname", "") == "SQLITE_FULL":
            return (f"SQLite reports the database or disk is full, though the file system holding {data_dir} has "
                    f"{free:,} bytes free: check quotas and size limits on {data_dir}")
    if isinstance(error, OSError) and error.errno == errno.EDQUOT:
        return f"the disk quota is exceeded ({error.strerror}); free some space or raise the quota"
    return (f"writing failed ({error}): the disk may be full, over a quota, or failing; check `df {data_dir}` "
            "and the system log")


def _remedy(data_dir: Path) -> str:
    return (f"make {data_dir} and the files in it readable and writable by {_user()}, or set "
            "SWITCHBOARD_DATA_DIR to a directory that is")


def _user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
