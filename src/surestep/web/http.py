"""A small, strict HTTP/1.1 server on asyncio streams, enough for the dashboard.

What it does: GET, HEAD and POST; keep-alive; bodies by ``Content-Length``
up to :data:`MAX_BODY`; a bounded request head (:data:`MAX_HEAD`) read within
:data:`HEAD_TIMEOUT`; idle connections closed after :data:`IDLE_TIMEOUT`.
What it refuses, rather than half-supports: chunked or otherwise
transfer-encoded request bodies (501), conflicting ``Content-Length``
headers, header folding, absolute-form targets and HTTP versions other than
1.0 and 1.1 (400/505). A refused request closes the connection, so nothing
left unread on the wire is taken for a next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

log = logging.getLogger("surestep.web")

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
BODY_TIMEOUT = 10.0

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    version: str = "HTTP/1.1"

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def json(self) -> Any:
        """The body as JSON; :class:`HttpError` 400 when it is not."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"the request body is not JSON: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(value), "application/json", dict(headers or {}))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


Handler = Callable[[Request], Awaitable[Response]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_head(head: bytes) -> Request:
    """The request line and headers (``head`` ends with the blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "undecodable request head") from None
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not method or not set(method) <= _TOKEN_CHARS:
        raise HttpError(400, "malformed method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, f"{version[:20]!r} is not supported; use HTTP/1.1")
    if not target.startswith("/") or target.startswith("//"):
        raise HttpError(400, "the request target must be a path")
    headers: dict[str, str] = {}
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many headers")
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name) <= _TOKEN_CHARS:
            raise HttpError(400, "malformed header line")
        key, value = name.lower(), value.strip(" \t")
        if key in headers:
            if key in ("content-length", "host", "authorization"):
                if headers[key] != value:
                    raise HttpError(400, f"conflicting {name} headers")
                continue
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    if "transfer-encoding" in headers:
        raise HttpError(
            501, "transfer-encoded request bodies are not supported; send Content-Length"
        )
    split = urlsplit(target)
    return Request(
        method=method,
        path=unquote(split.path),
        query=dict(parse_qsl(split.query, keep_blank_values=True)),
        headers=headers,
        version=version,
    )


def content_length(request: Request) -> int:
    raw = request.headers.get("content-length")
    if raw is None:
        return 0
    if not raw.isdigit() or len(raw) > 12:
        raise HttpError(400, "malformed Content-Length")
    length = int(raw)
    if length > MAX_BODY:
        raise HttpError(413, f"request body over {MAX_BODY} bytes")
    return length


def encode_response(response: Response, *, head_only: bool, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    headers = {
        "Content-Type": response.content_type,
        "Content-Length": str(len(response.body)),
        "Connection": "keep-alive" if keep_alive else "close",
        **response.headers,
    }
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


class HttpServer:
    """Serves ``handler`` on ``host:port`` until :meth:`close`."""

    def __init__(self, handler: Handler, default_headers: dict[str, str] | None = None) -> None:
        self.handler = handler
        self.default_headers = default_headers or {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the address actually bound (``port=0`` picks a free one)."""
        self._server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, asyncio.TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while True:
            try:
                head = await asyncio.wait_for(
                    reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT if first else IDLE_TIMEOUT
                )
            except asyncio.LimitOverrunError:
                await self._send(
                    writer, error_response(431, "request head too large"), False, False
                )
                return
            except asyncio.IncompleteReadError:
                return  # the client closed the connection between requests
            first = False
            try:
                request = parse_head(head)
                length = content_length(request)
                if length:
                    request.body = await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT)
            except HttpError as exc:
                await self._send(
                    writer, error_response(exc.status, exc.message, exc.headers), False, False
                )
                return
            try:
                response = await self.handler(request)
            except HttpError as exc:
                response = error_response(exc.status, exc.message, exc.headers)
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                response = error_response(500, "internal error; see the dashboard's log")
            keep_alive = request.keep_alive
            await self._send(writer, response, request.method == "HEAD", keep_alive)
            if not keep_alive:
                return

    async def _send(
        self, writer: asyncio.StreamWriter, response: Response, head_only: bool, keep_alive: bool
    ) -> None:
        response.headers = {**self.default_headers, **response.headers}
        writer.write(encode_response(response, head_only=head_only, keep_alive=keep_alive))
        await writer.drain()
