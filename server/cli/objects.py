"""``switchboard objects``: list and fetch by key what upload_batch stored, from a shell.

    switchboard objects list [--bucket B] [--prefix P]   one object a line: key, size, ETag (tab-separated)
    switchboard objects get KEY [--bucket B] [-o FILE]   the object's bytes on stdout (binary-safe), or into FILE

It opens the store the server's settings select (the local directory store under the data
dir, or S3 when an endpoint or a bucket is configured), so nobody needs to know how the
local store lays out its files. stdout carries only the listing or the object; errors go
to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

import anyio

from server.cli.settings import add_data_dir_argument, run_with_settings
from server.config import Settings
from server.errors import InvalidArgument, NotFound
from server.objects.from_settings import open_object_store
from server.objects.naming import check_bucket
from server.objects.store import ObjectStore

SETTINGS_NOTE = ("Settings as for `serve`: SWITCHBOARD_* variables over ./switchboard.toml (or $SWITCHBOARD_CONFIG); "
                 "S3 when SWITCHBOARD_S3_ENDPOINT_URL or SWITCHBOARD_S3_BUCKET is set, else the local store.")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``objects list`` and ``objects get`` to the ``switchboard`` command."""
    objects = commands.add_parser(
        "objects", help="list or fetch stored objects by key (local store or S3)",
        description="List or fetch the objects upload_batch stored.", epilog=SETTINGS_NOTE,
    )
    actions = objects.add_subparsers(dest="objects_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="keys, sizes and ETags, one object a line",
                                 description="Print key<TAB>size<TAB>etag for each object, in key order.")
    listing.add_argument("--prefix", default="", help="only keys starting with this (e.g. run-42/)")
    get = actions.add_parser("get", help="one object's bytes, to stdout or a file",
                             description="Write the object's bytes, unchanged, to stdout or FILE.")
    get.add_argument("key", metavar="KEY", help="the object's key, e.g. run-42/out/report.md")
    get.add_argument("-o", "--output", type=Path, metavar="FILE",
                     help="write to FILE (replaced only once the whole object has arrived) instead of stdout")
    for parser in (listing, get):
        parser.add_argument("--bucket", help="default: SWITCHBOARD_S3_BUCKET, or 'local' for the local store")
        add_data_dir_argument(parser, "state directory holding the local store")


def run(args: argparse.Namespace) -> int:
    """Run ``objects list`` or ``objects get``; 0 on success, 1 if it failed (a full disk, a directory
    given as FILE, a closed pipe included), 2 for invalid settings."""
    return run_with_settings(args.data_dir, lambda settings: anyio.run(_run, settings, args, sys.stdout.buffer))


async def _run(settings: Settings, args: argparse.Namespace, stdout: BinaryIO) -> None:
    if settings.uses_local_object_store and not await anyio.Path(settings.local_objects_dir).is_dir():
        # Checked here, because opening the store would create the directory: a reading command must not.
        raise NotFound(f"no local object store at {settings.local_objects_dir}: nothing was uploaded with this data "
                       "dir (pass --data-dir or set SWITCHBOARD_DATA_DIR)")
    store = await open_object_store(settings)
    try:
        bucket = args.bucket or store.default_bucket
        if bucket is None:
            raise InvalidArgument("no bucket: pass --bucket, or set SWITCHBOARD_S3_BUCKET")
        check_bucket(bucket)
        if args.objects_action == "list":
            await _list(store, bucket, args.prefix, stdout)
        elif args.output is None:
            await _copy(store, bucket, args.key, stdout)
        else:
            await _get_into(store, bucket, args.key, args.output)
    finally:
        await store.close()


async def _list(store: ObjectStore, bucket: str, prefix: str, stdout: BinaryIO) -> None:
    async with contextlib.aclosing(store.list_objects(bucket, prefix=prefix)) as listing:
        async for item in listing:
            stdout.write(f"{item.key}\t{item.size}\t{item.etag}\n".encode())
    stdout.flush()


async def _copy(store: ObjectStore, bucket: str, key: str, sink: BinaryIO) -> None:
    async with contextlib.aclosing(store.stream_object(bucket, key)) as chunks:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(sink.write, chunk)
    await anyio.to_thread.run_sync(sink.flush)


async def _get_into(store: ObjectStore, bucket: str, key: str, output: Path) -> None:
    # Into a temporary file beside FILE, renamed over it at the end: a fetch that fails part-way
    # (object missing, connection lost, disk full) leaves FILE as it was and no partial file.
    descriptor, name = await anyio.to_thread.run_sync(
        functools.partial(tempfile.mkstemp, dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    )
    temp = anyio.Path(name)
    try:
        with os.fdopen(descriptor, "wb") as sink:
            await _copy(store, bucket, key, sink)
        await temp.replace(output)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await temp.unlink(missing_ok=True)
        raise
