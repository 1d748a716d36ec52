"""The stdio transport: JSON-RPC messages as lines on stdin and stdout.

It replaces the SDK's ``stdio_server`` for three reasons:

- End of input is not the end of the work. The SDK's dispatcher cancels every request in
  flight when its read stream ends, so ``printf '...' | switchboard serve`` lost all but the
  first answer. Here the read stream ends only once every request received has been answered
  (or cancelled by the client), so one-shot scripted use gets every answer, and the server
  then shuts down cleanly.
- Every line gets an answer. A line that is not a valid JSON-RPC message is answered with
  -32700 or -32600 (see `server.jsonrpc_wire`); the SDK dropped it and the client waited forever.
- Lines are bounded: one longer than ``max_line_bytes`` is refused and discarded unread.

Like the SDK's transport, it moves fds 0 and 1 out of the way while serving: fd 0 reads
/dev/null and fd 1 writes to stderr, so neither a stray ``print`` nor a child process can
corrupt or steal protocol frames; the protocol uses private duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.abc
import anyio.to_thread
from mcp.shared.message import SessionMessage
from mcp_types import (
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from server.jsonrpc_wire import INVALID_REQUEST, RequestId, WireError, read_message, too_large
from server.stdio.stdin_lines import OversizedLine, StdinLines
from server.stdio.stdout_frames import StdoutFrames

logger = logging.getLogger(__name__)

# Lines longer than this are parsed in a worker thread, so a big store_batch does not stall the event loop.
PARSE_INLINE_MAX_BYTES = 1024 * 1024

ReadStream = anyio.abc.ObjectReceiveStream[SessionMessage | Exception]
WriteStream = anyio.abc.ObjectSendStream[SessionMessage]


class UnansweredRequests:
    """The client's requests that were handed to the server and not yet answered or cancelled."""

    def __init__(self) -> None:
        self._counts: dict[RequestId, int] = {}  # a count: a careless client may reuse an id
        self._changed = anyio.Event()
        self._abandoned = False

    def __len__(self) -> int:
        return sum(self._counts.values())

    def received(self, request_id: RequestId) -> None:
        self._counts[request_id] = self._counts.get(request_id, 0) + 1

    def settled(self, request_id: RequestId) -> None:
        """Answered, or cancelled by the client (the server then sends no answer)."""
        count = self._counts.pop(request_id, 0)
        if count > 1:
            self._counts[request_id] = count - 1
        self._changed.set()

    def abandon(self) -> None:
        """Nobody can receive the answers any more: stop waiting for them."""
        self._abandoned = True
        self._changed.set()

    async def wait_until_settled(self) -> None:
        while self._counts and not self._abandoned:
            self._changed = anyio.Event()
            await self._changed.wait()


@contextlib.asynccontextmanager
async def stdio_transport(max_line_bytes: int) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Serve the process's stdin and stdout as the (read, write) stream pair the SDK's server runs on."""
    with _claim_stdio() as (stdin_fd, stdout_fd):
        frames = StdoutFrames(stdout_fd)
        frames.start()
        lines = StdinLines(stdin_fd, max_line_bytes)
        inbound_writer, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        outbound, outbound_reader = anyio.create_memory_object_stream[SessionMessage](0)
        unanswered = UnansweredRequests()
        written_all = anyio.Event()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_read_requests, lines, max_line_bytes, inbound_writer, frames, unanswered)
                tasks.start_soon(_write_replies, outbound_reader, frames, unanswered, written_all)
                yield inbound, outbound
                # The server has stopped (its write stream is closed): once the last reply is out,
                # stop reading, which after a signal may still be waiting for input.
                await written_all.wait()
                tasks.cancel_scope.cancel()
        finally:
            lines.close()
            frames.close()


async def _read_requests(
    lines: StdinLines,
    max_line_bytes: int,
    inbound: anyio.abc.ObjectSendStream[SessionMessage | Exception],
    frames: StdoutFrames,
    unanswered: UnansweredRequests,
) -> None:
    async with inbound:
        async for line in lines:
            if isinstance(line, OversizedLine):
                logger.warning("refused a message of %d bytes: stdio_max_line_bytes is %d", line.size, max_line_bytes)
                await _reply_error(frames, too_large(line.size, max_line_bytes, "stdio_max_line_bytes", "a message"))
                continue
            if not line.strip():  # blank lines carry nothing to answer
                continue
            message = await _decode(line)
            if isinstance(message, WireError):
                logger.warning("answered an unreadable message with %d: %s", message.code, message.message)
                await _reply_error(frames, message)
                continue
            if isinstance(message, JSONRPCRequest):
                unanswered.received(message.id)
            elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
                cancelled = (message.params or {}).get("requestId")
                if isinstance(cancelled, int | str):
                    unanswered.settled(cancelled)
            await inbound.send(SessionMessage(message))
        if unanswered:
            logger.info("stdin closed; answering the %d requests in flight before shutting down", len(unanswered))
        await unanswered.wait_until_settled()
        logger.info("stdin closed; shutting down")


async def _decode(line: bytes) -> JSONRPCMessage | WireError:
    """The SDK's message for ``line``, or the `WireError` to answer it with."""
    if len(line) > PARSE_INLINE_MAX_BYTES:
        parsed = await anyio.to_thread.run_sync(read_message, line)
    else:
        parsed = read_message(line)
    if isinstance(parsed, WireError):
        return parsed
    try:
        return jsonrpc_message_adapter.validate_python(parsed, by_name=False)
    except ValidationError as error:  # read_message checks the envelope, so this is a safety net
        request_id = parsed.get("id")
        return WireError(INVALID_REQUEST, f"Invalid Request: {error.errors()[0]['msg']}",
                         request_id if isinstance(request_id, int | str) else None)


async def _reply_error(frames: StdoutFrames, error: WireError) -> None:
    with contextlib.suppress(OSError):  # stdout is gone: _write_replies reports that
        await frames.write(error.to_json() + b"\n")


async def _write_replies(
    outbound: anyio.abc.ObjectReceiveStream[SessionMessage],
    frames: StdoutFrames,
    unanswered: UnansweredRequests,
    written_all: anyio.Event,
) -> None:
    stdout_open = True
    async with outbound:
        async for session_message in outbound:
            message = session_message.message
            if stdout_open:
                frame = message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
                try:
                    await frames.write(frame)
                except OSError as error:
                    logger.warning("stdout is closed (%s): the client can no longer receive answers", error)
                    stdout_open = False
                    unanswered.abandon()
            if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
                unanswered.settled(message.id)
    written_all.set()


@contextlib.contextmanager
def _claim_stdio() -> Iterator[tuple[int, int]]:
    """Private duplicates of fds 0 and 1 for the protocol; fd 0 reads /dev/null and fd 1 writes to stderr meanwhile."""
    sys.stdout.flush()
    stdin_fd, stdout_fd = os.dup(0), os.dup(1)  # not inherited by child processes
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
        os.dup2(2, 1)
    finally:
        os.close(devnull)
    try:
        yield stdin_fd, stdout_fd
    finally:
        sys.stdout.flush()
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)
        # The private duplicates stay open: a reader or writer thread may still block on one, and
        # a closed number could be reused under it. The process is about to exit anyway.
