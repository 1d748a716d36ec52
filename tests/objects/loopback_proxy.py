"""A small HTTP/1.1 proxy on a loopback port, in front of moto's S3 server.

It relays requests unchanged (keeping client connections open, as S3 does) and can, for
chosen keys, answer 503 (ServiceUnavailable or SlowDown) or 403, drop the connection, or
hold a request until released, for the first N matching requests. It records every
request it saw (method, path, headers, MD5 of the body), and can hold every response for a
fixed time to model a link's round trip: each exchange, including a ``100 Continue``
interim answer, then costs that much once.

Blocking sockets, one thread per client connection: simple, and plenty for tests and the
benchmark. Used by tests/objects and benchmarks/upload_bench.py.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

FaultMode = Literal["503", "slowdown", "denied", "drop", "stall"]

_ERROR_ANSWERS: dict[str, tuple[str, str]] = {
    "503": ("503 Service Unavailable", "ServiceUnavailable"),
    "slowdown": ("503 Slow Down", "SlowDown"),
    "denied": ("403 Forbidden", "AccessDenied"),
}


@dataclass
class FaultRule:
    key: str  # the rule matches requests whose (decoded) path ends with /<key>
    mode: FaultMode
    times: int | None  # matching requests that get the fault; None: every one
    methods: tuple[str, ...] = ("PUT", "POST")
    hits: int = 0


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # decoded, without the query
    query: str
    headers: dict[str, str]  # names lower-cased
    body_md5: str  # base64, as Content-MD5 carries it
    body_size: int
    fault: FaultMode | None


@dataclass
class _Message:
    head: bytes
    start_line: str
    headers: dict[str, str] = field(default_factory=dict)


class LoopbackProxy:
    """Start with `start()`, point clients at `url`, stop with `stop()`."""

    def __init__(self, upstream_port: int, *, latency_seconds: float = 0.0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.latency_seconds = latency_seconds
        self.requests: list[SeenRequest] = []
        self.stalled = threading.Event()  # set when a "stall" rule is holding a request
        self._release = threading.Event()
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LoopbackProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve_connection(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="loopback-proxy",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def fail(self, key: str, mode: FaultMode, times: int | None = 1,
             methods: tuple[str, ...] = ("PUT", "POST")) -> FaultRule:
        rule = FaultRule(key, mode, times, methods)
        with self._lock:
            self._rules.append(rule)
        return rule

    def release(self) -> None:
        """Let held ("stall") requests go: their connections are closed without an answer."""
        self._release.set()

    def seen(self, method: str | None = None, key: str | None = None) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (key is None or r.path.endswith("/" + key))]

    # -- relaying ---------------------------------------------------------------------------

    def _serve_connection(self, client: socket.socket) -> None:
        client_file = client.makefile("rb")
        upstream: socket.socket | None = None
        upstream_file = None
        try:
            while True:
                request = _read_head(client_file)
                if request is None:
                    return
                method, target, _ = request.start_line.split(" ", 2)
                parts = urlsplit(target)
                path = unquote(parts.path)
                fault = self._match(method, path)
                expects_continue = request.headers.get("expect", "").lower() == "100-continue"
                if fault is not None and expects_continue:
                    self._record(request, method, path, parts.query, b"", fault)
                    self._answer_fault(client, fault, path)
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    upstream_file = upstream.makefile("rb")
                assert upstream_file is not None
                body = b""
                if fault is None:
                    upstream.sendall(request.head)
                    if expects_continue:
                        interim = _read_head(upstream_file)
                        if interim is None:
                            return
                        self._delay()
                        client.sendall(interim.head)
                        if interim.start_line.split(" ")[1] != "100":  # refused before the body
                            bodiless = _bodiless(method, interim)
                            client.sendall(_read_body(upstream_file, interim.headers, bodiless=bodiless))
                            continue
                    body = _read_body(client_file, request.headers, request=True)
                    upstream.sendall(body)
                else:
                    body = _read_body(client_file, request.headers, request=True)
                self._record(request, method, path, parts.query, body, fault)
                if fault is not None:
                    self._answer_fault(client, fault, path)
                    return
                response = _read_head(upstream_file)
                while response is not None and response.start_line.split(" ")[1] == "100":
                    response = _read_head(upstream_file)  # an unasked-for 100 Continue: skip it
                if response is None:
                    return
                response_body = _read_body(upstream_file, response.headers, bodiless=_bodiless(method, response))
                if response.headers.get("connection", "").lower() == "close":
                    # moto's server closes after every answer; S3 keeps connections open. Keep the
                    # client's connection and reconnect upstream next time, so clients see S3's behaviour.
                    upstream_file.close()
                    upstream.close()
                    upstream = upstream_file = None
                self._delay()
                client.sendall(_keep_alive(response.head) + response_body)
        except (ConnectionError, OSError):
            return
        finally:
            for closable in (client_file, upstream_file, upstream):
                if closable is not None:
                    closable.close()

    def _match(self, method: str, path: str) -> FaultMode | None:
        with self._lock:
            for rule in self._rules:
                left = rule.times is None or rule.hits < rule.times
                if left and method in rule.methods and path.endswith("/" + rule.key):
                    rule.hits += 1
                    return rule.mode
        return None

    def _answer_fault(self, client: socket.socket, fault: FaultMode, path: str) -> None:
        if fault == "stall":
            self.stalled.set()
            self._release.wait(timeout=60)
        if fault in ("drop", "stall"):
            client.shutdown(socket.SHUT_RDWR)
            return
        status, code = _ERROR_ANSWERS[fault]
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>injected by the test proxy</Message><Resource>{path}</Resource></Error>").encode()
        self._delay()
        client.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
                       "Connection: close\r\n\r\n".encode() + body)

    def _record(self, request: _Message, method: str, path: str, query: str, body: bytes,
                fault: FaultMode | None) -> None:
        seen = SeenRequest(method, path, query, request.headers,
                           base64.b64encode(hashlib.md5(body).digest()).decode(), len(body), fault)
        with self._lock:
            self.requests.append(seen)

    def _delay(self) -> None:
        if self.latency_seconds:
            time.sleep(self.latency_seconds)  # models the link's round trip; not synchronisation


def _keep_alive(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.lower().startswith(b"connection:"))


def _bodiless(method: str, response: _Message) -> bool:
    return method == "HEAD" or response.start_line.split(" ")[1] in ("204", "304")


def _read_head(stream) -> _Message | None:  # type: ignore[no-untyped-def]
    lines = []
    while True:
        line = stream.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            if not lines:
                continue  # tolerate stray blank lines between messages
            break
        lines.append(line)
    head = b"".join(lines) + b"\r\n"
    start_line = lines[0].decode("latin-1").strip()
    headers = {}
    for raw in lines[1:]:
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return _Message(head, start_line, headers)


def _read_body(stream, headers: dict[str, str], *, request: bool = False, bodiless: bool = False) -> bytes:  # type: ignore[no-untyped-def]
    if bodiless:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = stream.readline()
            chunks.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = stream.readline()
                    chunks.append(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(chunks)
            chunks.append(stream.read(size + 2))
    if "content-length" in headers:
        return stream.read(int(headers["content-length"]))
    if request:
        return b""
    return stream.read()  # no length: the body runs to the end of the connection
