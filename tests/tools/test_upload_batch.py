"""upload_batch through a real MCP client session (in-memory), modern and legacy handshakes:
the local store by default, and S3 (moto over HTTP) when an endpoint is configured."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.config import Settings
from tests.manual_clock import ManualClock
from tests.objects.loopback_proxy import LoopbackProxy
from tests.tools.answers import MODEL_VISIBLE_BUDGET, OUTPUT_SCHEMAS_BUDGET, error_text, listing_sizes, structured_of

Connect = Callable[[], Client]


@pytest.fixture
def settings(tmp_path: Path, upload_root: Path) -> Settings:
    return Settings.model_validate({
        "data_dir": tmp_path / "data", "memory_max_value_bytes": 64 * 1024, "upload_roots": [upload_root],
        "upload_multipart_threshold_bytes": 5 * 1024 * 1024, "upload_part_size_bytes": 5 * 1024 * 1024,
    })


def s3_settings(tmp_path: Path, upload_root: Path, endpoint_url: str, bucket: str) -> Settings:
    """A server whose uploads go to S3 at ``endpoint_url`` (moto, through the proxy)."""
    return Settings.model_validate({
        "data_dir": tmp_path / "data", "upload_roots": [upload_root], "s3_endpoint_url": endpoint_url,
        "s3_bucket": bucket, "s3_region": "us-east-1", "s3_addressing_style": "path",
        "s3_access_key_id": "testing", "s3_secret_access_key": "testing", "upload_retry_initial_seconds": 0.01,
        "upload_multipart_threshold_bytes": 5 * 1024 * 1024, "upload_part_size_bytes": 5 * 1024 * 1024,
    })


async def call(client: Client, arguments: dict[str, Any], **options: Any) -> dict[str, Any]:
    return structured_of(await client.call_tool("upload_batch", arguments, **options))


async def test_uploads_files_and_inline_content_to_the_local_store(connect: Connect, upload_root: Path) -> None:
    (upload_root / "out").mkdir()
    (upload_root / "out" / "report.md").write_text("# Report\n")
    blob = os.urandom(300)
    async with connect() as client:
        answer = await call(client, {
            "files": [
                {"path": "out/report.md"},
                {"content": "a,b\n1,2\n", "key": "table.csv"},
                {"contentBase64": base64.b64encode(blob).decode(), "key": "blob.bin", "contentType": "image/png"},
            ],
            "prefix": "null",
            "maxConcurrency": 4,
        })
        assert (answer["status"], answer["http_status"], answer["bucket"], answer["failed"]) == ("ok", 200, "local", [])
        assert [(u["key"], u["content_type"], u["attempts"]) for u in answer["uploaded"]] == [
            ("null/out/report.md", "text/markdown", 1), ("null/table.csv", "text/csv", 1),
            ("null/blob.bin", "image/png", 1),
        ]
        assert answer["totals"]["files"] == 3 and answer["totals"]["bytes"] == 9 + 8 + 300
        summary = await client.call_tool("memory_usage", {"action": "retrieve", "namespace": "uploads",
                                                          "key": f"batch-{answer['batch_id']}"})
        assert summary.structured_content["entry"]["value"]["status"] == "ok"


async def test_a_partial_batch_reports_each_failure_with_its_code(connect: Connect, upload_root: Path,
                                                                  tmp_path: Path) -> None:
    (upload_root / "fine.txt").write_text("fine")
    (tmp_path / "outside.txt").write_text("secret")
    async with connect() as client:
        answer = await call(client, {"files": [
            {"path": "fine.txt"}, {"path": str(tmp_path / "outside.txt")}, {"path": "gone.txt"},
            {"content": "x", "key": "../escape"},
        ]})
    assert (answer["status"], answer["http_status"]) == ("partial", 207)
    assert [(f["source"], f["error"], f["attempts"]) for f in answer["failed"]] == [
        (str(tmp_path / "outside.txt"), "forbidden", 0), ("gone.txt", "not_found", 0),
        ("files[3].content", "invalid_argument", 0),
    ]
    assert [u["key"] for u in answer["uploaded"]] == ["fine.txt"]


async def test_progress_notifications_count_up_to_the_total(connect: Connect, upload_root: Path) -> None:
    sizes = [1000, 2000, 6 * 1024 * 1024]
    for i, size in enumerate(sizes):
        (upload_root / f"f{i}.bin").write_bytes(os.urandom(size))
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with connect() as client:
        answer = await call(client, {"files": [{"path": f"f{i}.bin"} for i in range(3)]},
                            progress_callback=on_progress)
    assert answer["status"] == "ok"
    last_progress, last_total, last_message = updates[-1]
    assert (last_progress, last_total) == (sum(sizes), sum(sizes))
    assert last_message is not None and last_message.startswith("3/3 files")
    assert [u[0] for u in updates] == sorted(u[0] for u in updates)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"files": []}, "invalid_argument: files must hold 1..1000 entries"),
        ({"files": [{"content": "x", "key": "k"}], "bucket": "UPPER"}, "not a valid bucket name"),
        ({"files": [{"content": "x", "key": "k"}], "max_concurrency": 65}, "max_concurrency must be 1..64"),
        ({"files": [{"content": "x", "key": "k"}], "max_concurrency": 0},
         "invalid_argument: max_concurrency must be an integer >= 1; got 0"),
        ({"files": "not-a-list"}, "files must be a list of objects {path?, content?, content_base64?, key?, "
                                  "content_type?, metadata?}; got 'not-a-list'"),
    ],
)
async def test_an_invalid_call_is_a_tool_error_and_uploads_nothing(
    connect: Connect, settings: Settings, arguments: dict[str, Any], expected: str
) -> None:
    async with connect() as client:
        result = await client.call_tool("upload_batch", arguments)
    assert expected in error_text(result)
    assert not (settings.local_objects_dir / "local").exists()


async def test_all_or_nothing_alias_uploads_nothing(connect: Connect, settings: Settings) -> None:
    async with connect() as client:
        answer = await call(client, {"files": [{"content": "x", "key": "a"}, {"path": "missing"}],
                                     "allOrNothing": True})
    assert (answer["status"], answer["http_status"]) == ("failed", 500)
    assert [f["error"] for f in answer["failed"]] == ["aborted", "not_found"]
    assert not (settings.local_objects_dir / "local").exists()


async def test_uploads_to_s3_when_an_endpoint_is_configured(
    tmp_path: Path, upload_root: Path, proxy: LoopbackProxy, s3_admin: Any, clock: ManualClock
) -> None:
    bucket = f"tool-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    data = os.urandom(7 * 1024 * 1024)
    (upload_root / "big.bin").write_bytes(data)
    (upload_root / "small.txt").write_text("small")
    proxy.fail("small.txt", "503", times=1)
    settings = s3_settings(tmp_path, upload_root, proxy.url, bucket)
    async with Client(build_server(settings, clock=clock)) as client:
        answer = await call(client, {"files": [{"path": "big.bin"}, {"path": "small.txt", "metadata": {"a": "b"}}]})
    assert (answer["status"], answer["bucket"]) == ("ok", bucket)
    big, small = answer["uploaded"]
    assert big["checksum"].startswith("md5-of-parts:") and big["checksum"].endswith("-2")
    assert small["attempts"] == 2
    assert s3_admin.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data
    assert s3_admin.head_object(Bucket=bucket, Key="small.txt")["Metadata"] == {"a": "b"}


async def test_tool_is_listed_with_schemas_and_the_listing_stays_small(connect: Connect) -> None:
    async with connect() as client:
        tools = (await client.list_tools()).tools
    [tool] = [t for t in tools if t.name == "upload_batch"]
    assert tool.input_schema["required"] == ["files"] and tool.output_schema is not None
    assert set(tool.output_schema["required"]) >= {"status", "http_status", "uploaded", "failed", "totals"}
    model_visible, output_schemas = listing_sizes(tools)
    assert model_visible < MODEL_VISIBLE_BUDGET and output_schemas < OUTPUT_SCHEMAS_BUDGET


async def test_a_cancelled_call_aborts_its_multipart_upload_and_records_what_landed(
    tmp_path: Path, upload_root: Path, proxy: LoopbackProxy, s3_admin: Any, clock: ManualClock
) -> None:
    bucket = f"cancel-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    (upload_root / "big.bin").write_bytes(os.urandom(11 * 1024 * 1024))
    (upload_root / "small.txt").write_text("small")
    proxy.fail("big.bin", "stall", times=1, methods=("PUT",))
    settings = s3_settings(tmp_path, upload_root, proxy.url, bucket)
    files_done = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and message.startswith("1/"):
            files_done.set()

    async with Client(build_server(settings, clock=clock)) as client:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lambda: client.call_tool(
                    "upload_batch", {"files": [{"path": "small.txt"}, {"path": "big.bin"}]},
                    progress_callback=on_progress))
                await anyio.to_thread.run_sync(proxy.stalled.wait, 30)
                await files_done.wait()
                scope.cancel()
        with anyio.fail_after(30):  # the server aborts once the cancellation notice reaches it
            while s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads"):
                await anyio.sleep(0.05)
            while not (await client.call_tool("memory_usage", {"action": "list", "namespace": "uploads"})
                       ).structured_content["entries"]:
                await anyio.sleep(0.05)
        proxy.release()
        [entry] = (await client.call_tool("memory_usage", {"action": "search", "namespace": "uploads",
                                                           "pattern": "batch-*"})).structured_content["entries"]
    assert entry["value"]["status"] == "cancelled" and entry["value"]["uploaded"] == ["small.txt"]
    assert [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket)["Contents"]] == ["small.txt"]
