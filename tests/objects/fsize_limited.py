"""Local-store writes in a process whose files cannot grow past a limit, as on a full disk.

RLIMIT_FSIZE with SIGXFSZ ignored makes every write past the limit fail with a real OSError
(EFBIG, "File too large") part-way through, after the bytes below the limit were written:
the same shape as ENOSPC, without needing a tiny filesystem. The limit applies to the whole
process, so it runs as a child of the test; it prints what happened as JSON on stdout.

    python -m tests.objects.fsize_limited batch '{"limit": ..., "root": ..., "objects": ..., ...}'
    python -m tests.objects.fsize_limited part  '{"limit": ..., "objects": ..., "size": ...}'

``batch`` uploads ``files`` (paths under ``root``) with the given multipart sizes; ``part``
starts a multipart upload and sends one part of ``size`` bytes, then leaves without aborting,
so the test sees what the store itself left behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from server.errors import SwitchboardError
from server.objects import BatchRequest, FileSpec, LocalObjectStore
from tests.objects.conftest import Target, make_uploader

BUCKET = "local"


async def batch(config: dict[str, Any]) -> dict[str, Any]:
    store = LocalObjectStore(Path(config["objects"]))
    uploader = make_uploader(Target("local", store, BUCKET), [Path(config["root"])],
                             threshold=config["threshold"], part_size=config["part_size"])
    result = await uploader.upload(BatchRequest([FileSpec(path=name) for name in config["files"]], bucket=BUCKET))
    return {
        "uploaded": [item.key for item in result.uploaded],
        "failed": [{"key": f.key, "code": f.code, "message": f.message, "attempts": f.attempts}
                   for f in result.failed],
    }


async def part(config: dict[str, Any]) -> dict[str, Any]:
    store = LocalObjectStore(Path(config["objects"]))
    upload_id = await store.create_multipart_upload(BUCKET, "big.bin", content_type="x/y", metadata={})
    body = bytes(config["size"])
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    try:
        await store.upload_part(BUCKET, "big.bin", upload_id, 1, body, content_md5=md5)
    except SwitchboardError as error:
        return {"upload_id": upload_id, "code": error.code, "message": error.message}
    return {"upload_id": upload_id, "code": None}


def main() -> None:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, not a kill
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["limit"], hard))
    run = batch if mode == "batch" else part
    print(json.dumps(anyio.run(run, config)))


if __name__ == "__main__":
    main()
