"""A local-store writer that stops in the middle of its writes and waits there to be killed.

    python -m tests.objects.stuck_writer OBJECTS_DIR NAME

It stores ``NAME/done.txt`` (committed), starts a multipart upload of ``NAME/big.bin`` with part 1
complete, then runs two writes at once and holds each at a point a crash can hit: a put of
``NAME/cut.bin`` with its data and its new record written and fsynced but not swapped in, and
part 2 written and fsynced under its temporary name. Each write's own code runs up to there;
only the step after it waits. It prints ``upload <id>`` and then ``stuck put`` and ``stuck
part`` (in either order) on stdout, and waits until it is killed.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import threading
from pathlib import Path
from typing import Any

import anyio

from server.objects import LocalObjectStore, local

BUCKET = "local"
MiB = 1024 * 1024
_never = threading.Event()
_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def md5_of(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode("ascii")


def hold_writes() -> None:
    flush = local._flush_to_disk

    def stuck_swap(*_args: Any) -> None:
        say("stuck put")
        _never.wait()

    def flush_then_stick(file: Any) -> None:
        flush(file)
        if isinstance(file.name, str) and Path(file.name).name.startswith(".00002."):  # fdopen'ed: an int
            say("stuck part")
            _never.wait()

    LocalObjectStore._swap_record = staticmethod(stuck_swap)  # type: ignore[method-assign,assignment]
    local._flush_to_disk = flush_then_stick


async def main(root: Path, name: str) -> None:
    store = LocalObjectStore(root)
    done = b"committed before the crash"
    await store.put_object(BUCKET, f"{name}/done.txt", done, content_md5=md5_of(done), content_type="text/plain",
                           metadata={}, if_absent=False)
    upload_id = await store.create_multipart_upload(BUCKET, f"{name}/big.bin", content_type="x/y", metadata={})
    part = bytes(MiB)
    await store.upload_part(BUCKET, f"{name}/big.bin", upload_id, 1, part, content_md5=md5_of(part))
    say(f"upload {upload_id}")
    hold_writes()
    cut = b"c" * (2 * MiB)
    async with anyio.create_task_group() as writes:
        writes.start_soon(lambda: store.put_object(BUCKET, f"{name}/cut.bin", cut, content_md5=md5_of(cut),
                                                   content_type="x/y", metadata={}, if_absent=False))
        writes.start_soon(lambda: store.upload_part(BUCKET, f"{name}/big.bin", upload_id, 2, part,
                                                    content_md5=md5_of(part)))


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), sys.argv[2])
