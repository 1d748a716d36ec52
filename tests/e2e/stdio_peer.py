"""A minimal MCP peer speaking raw JSON-RPC to a real ``switchboard serve`` child process.

Raw lines rather than the SDK client, so a test can pipeline requests, read exactly which
ones were acknowledged, and then SIGKILL the server.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEADLINE_SECONDS = 30.0


def serve_command() -> list[str]:
    return [sys.executable, "-m", "server.cli", "serve"]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update({"SWITCHBOARD_DATA_DIR": str(data_dir), **extra})
    return env


class StdioPeer:
    def __init__(self, data_dir: Path, stderr_path: Path, **env: str) -> None:
        self._stderr = stderr_path.open("ab")
        self.process = subprocess.Popen(
            serve_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=server_env(data_dir, **env),
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.process.stdout is not None
        self._stdout_fd = self.process.stdout.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stdout_fd, selectors.EVENT_READ)
        self._buffer = b""
        self._next_id = 0

    def initialize(self) -> dict[str, Any]:
        result = self.request(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "tests", "version": "0"}},
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def send(self, message: dict[str, Any]) -> None:
        self.send_line(json.dumps(message).encode())

    def send_line(self, line: bytes) -> None:
        """Any bytes, as one line: for messages the server must refuse."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def send_request(self, method: str, params: dict[str, Any]) -> int:
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return self._next_id

    def read_message(self) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise TimeoutError("no message from the server within the deadline")
            chunk = os.read(self._stdout_fd, 65536)
            if not chunk:
                raise EOFError("the server closed stdout")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)  # anything that is not JSON-RPC on stdout fails the test here
        return message

    def read_response(self, request_id: int) -> dict[str, Any]:
        while True:
            message = self.read_message()
            if message.get("id") == request_id:
                return message

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.read_response(self.send_request(method, params))
        assert "error" not in response, response
        result: dict[str, Any] = response["result"]
        return result

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def close_stdin(self) -> None:
        """End of input: the server answers what it has received, then shuts down."""
        assert self.process.stdin is not None
        self.process.stdin.close()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE_SECONDS)
        self._close_files()

    def wait(self) -> int:
        code = self.process.wait(DEADLINE_SECONDS)
        self._close_files()
        return code

    def _close_files(self) -> None:
        self._selector.close()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()
