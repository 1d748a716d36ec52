"""LocalObjectStore details the shared uploader tests cannot see: what stays on disk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

from server.objects.local import LocalObjectStore


async def test_concurrent_overwrites_of_one_key_leave_exactly_one_data_file(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    bodies = [f"version {i}".encode() * 100 for i in range(8)]
    for _ in range(20):
        await asyncio.gather(*(
            store.put_object("local", "same-key", body, content_md5=base64.b64encode(hashlib.md5(body).digest()).decode(),
                             content_type="text/plain", metadata={}, if_absent=False)
            for body in bodies
        ))
    data_files = list(tmp_path.rglob("*.data"))
    assert len(data_files) == 1
    assert data_files[0].read_bytes() in bodies
