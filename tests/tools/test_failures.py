"""Failures nobody planned for, through a real MCP client session (modern and legacy handshakes):
they answer with a code (``internal``, or ``invalid_argument`` for bad input the engine
chokes on) instead of a bare "Error executing tool", and the server keeps serving."""

from __future__ import annotations

import base64
import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing

import pytest
from mcp import Client

from server.config import Settings
from tests.tools.answers import error_text, structured_of

Connect = Callable[[], Client]


def cursor_of(raw: bytes) -> str:
    """A list cursor as the server encodes them (URL-safe base64 of JSON), around any bytes."""
    return base64.urlsafe_b64encode(raw).decode("ascii")


async def test_an_unexpected_failure_answers_internal_logs_its_traceback_and_the_server_goes_on(
    connect: Connect, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect() as client:
        stored = await client.call_tool("memory_usage", {"action": "store", "key": "k", "value": 1})
        assert not stored.is_error
        # Another process damages the database under the running server: no domain error covers this.
        with closing(sqlite3.connect(settings.database_path)) as other:
            other.execute("DROP TABLE entries")
            other.commit()
        with caplog.at_level(logging.ERROR):
            result = await client.call_tool("memory_usage", {"action": "retrieve", "key": "k"})
        expected = "internal: memory_usage failed unexpectedly (OperationalError); the details are in the server log"
        assert error_text(result) == expected
        [record] = [r for r in caplog.records if r.exc_info is not None]
        assert record.levelno == logging.ERROR and "memory_usage" in record.getMessage()
        assert record.exc_info is not None and isinstance(record.exc_info[1], sqlite3.OperationalError)
        assert {tool.name for tool in (await client.list_tools()).tools} >= {"memory_usage", "upload_batch"}
        upload = await client.call_tool("upload_batch", {"files": "nope"})
        assert error_text(upload).startswith("invalid_argument: files must be a list")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'["default", "\\ud800"]', id="lone-surrogate"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
    ],
)
async def test_a_forged_cursor_is_an_invalid_argument(connect: Connect, raw: bytes) -> None:
    async with connect() as client:
        for key in ("a", "b"):
            await client.call_tool("memory_usage", {"action": "store", "key": key, "value": 1})
        result = await client.call_tool("memory_usage", {"action": "list", "cursor": cursor_of(raw)})
        assert error_text(result).startswith("invalid_argument: cursor ")
        listing = structured_of(await client.call_tool("memory_usage", {"action": "list"}))
        assert [e["key"] for e in listing["entries"]] == ["a", "b"]
