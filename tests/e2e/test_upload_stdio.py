"""upload_batch through the real ``switchboard serve`` over stdio, configured only by environment
variables (as a deployment would be), against moto's S3 server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from tests.e2e.stdio_peer import serve_command, server_env
from tests.objects.moto_process import MotoServer


async def test_upload_batch_over_stdio_with_s3_settings_from_the_environment(
    tmp_path: Path, moto: MotoServer, s3_admin: Any
) -> None:
    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    root = tmp_path / "artifacts"
    root.mkdir()
    report = os.urandom(50_000)
    (root / "report.bin").write_bytes(report)
    env = server_env(
        tmp_path / "data",
        SWITCHBOARD_S3_ENDPOINT_URL=moto.url, SWITCHBOARD_S3_REGION="us-east-1", SWITCHBOARD_S3_BUCKET=bucket,
        SWITCHBOARD_S3_ADDRESSING_STYLE="path", SWITCHBOARD_UPLOAD_ROOTS=str(root),
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",  # the standard AWS chain
    )
    command, *args = serve_command()
    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(Path(__file__).resolve().parents[2]))
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("upload_batch", {"files": [
            {"path": "report.bin"}, {"path": str(tmp_path / "data" / "memory.sqlite3")},
        ], "prefix": "e2e"})
    answer = result.structured_content
    assert answer is not None and (answer["status"], answer["bucket"]) == ("partial", bucket)
    assert [u["key"] for u in answer["uploaded"]] == ["e2e/report.bin"]
    assert answer["failed"][0]["error"] == "forbidden"  # the server's own database is outside the roots
    assert s3_admin.get_object(Bucket=bucket, Key="e2e/report.bin")["Body"].read() == report
