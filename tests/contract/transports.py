"""Harnesses for the transport contract: the real transports against small in-process
servers (a threaded HTTP server, a websockets server on the test's loop), and the
in-memory ones, behind one interface the contract tests use."""

from __future__ import annotations

import asyncio
import contextlib
import http
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from foundation.clock import ManualClock
from source_workers.frames import FrameLimits
from source_workers.transport.http import HttpClient
from source_workers.transport.memory import (
    HttpRequest,
    MemoryConnection,
    MemoryHttp,
    MemoryWebSocket,
    Reply,
)
from source_workers.transport.protocol import HttpTransport, StreamOptions, WebSocketTransport
from source_workers.transport.websocket import WebsocketsTransport

LIMITS = FrameLimits(max_bytes=2_000, max_depth=8)


async def settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


# --- HTTP ----------------------------------------------------------------------


@dataclass
class HttpHarness:
    transport: HttpTransport
    base: str
    clock: ManualClock
    route: Callable[[str, Reply], None]
    requests: Callable[[], list[HttpRequest]]
    unreachable: str
    """A URL where nothing answers."""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def real_http() -> Any:
    replies: dict[str, Reply] = {}
    seen: list[HttpRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            url = f"{base}{parts.path}"
            seen.append(HttpRequest(url, dict(parse_qsl(parts.query)), dict(self.headers)))
            reply = replies.get(url, Reply(status=404, body={"message": "NotFound"}))
            payload = reply.payload()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if reply.truncate_to is not None:
                payload = payload[: reply.truncate_to]
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    clock = ManualClock()
    client = HttpClient(source="s", limits=LIMITS, timeout_s=5, user_agent="t", clock=clock)
    try:
        yield HttpHarness(
            client,
            base,
            clock,
            lambda url, reply: replies.__setitem__(url, reply),
            lambda: list(seen),
            f"http://127.0.0.1:{closed_port()}/x",
        )
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def memory_http() -> Any:
    clock = ManualClock()
    transport = MemoryHttp(source="s", limits=LIMITS, clock=clock)
    base = "http://provider.test"
    unreachable = f"{base}/unreachable"
    transport.route(unreachable, Reply.refused())
    yield HttpHarness(
        transport,
        base,
        clock,
        transport.route,
        lambda: list(transport.requests),
        unreachable,
    )


# --- websocket -----------------------------------------------------------------


class ServerEnd:
    """The server's end of one connection, the same for both transports."""

    def __init__(self, real: ServerConnection | None, memory: MemoryConnection | None) -> None:
        self._real, self._memory = real, memory

    @property
    def path(self) -> str:
        if self._real is not None:
            assert self._real.request is not None
            return self._real.request.path
        assert self._memory is not None
        parts = urlsplit(self._memory.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def header(self, name: str) -> str | None:
        if self._real is not None:
            assert self._real.request is not None
            return self._real.request.headers.get(name)
        assert self._memory is not None
        return {k.lower(): v for k, v in self._memory.headers.items()}.get(name.lower())

    async def send(self, frame: str | bytes) -> None:
        if self._real is not None:
            with contextlib.suppress(Exception):
                await self._real.send(frame)
        else:
            assert self._memory is not None
            self._memory.send(frame)

    async def receive(self) -> str:
        if self._real is not None:
            message = await self._real.recv()
            return message if isinstance(message, str) else message.decode()
        assert self._memory is not None
        return await self._memory.receive()

    async def close(self, code: int, reason: str) -> None:
        if self._real is not None:
            await self._real.close(code, reason)
        else:
            assert self._memory is not None
            self._memory.close(code, reason)

    async def closed(self) -> None:
        """Wait until the connection ended."""
        if self._real is not None:
            await self._real.wait_closed()
        else:
            assert self._memory is not None
            while self._memory.open:
                await asyncio.sleep(0)

    def drop(self) -> None:
        if self._real is not None:
            self._real.transport.abort()
        else:
            assert self._memory is not None
            self._memory.drop()


@dataclass
class WsHarness:
    transport: WebSocketTransport
    url: str
    clock: ManualClock
    accept: Callable[[], Any]
    refuse_next: Callable[[int], None]
    unreachable: Callable[[], str]
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def options(self, **overrides: Any) -> StreamOptions:
        values: dict[str, Any] = {
            "source": "s",
            "max_frame_bytes": 1_024,
            "connect_timeout_s": 5.0,
            "idle_timeout_s": 30.0,
            "stop": self.stop,
            "clock": self.clock,
            **overrides,
        }
        return StreamOptions(**values)


@contextlib.asynccontextmanager
async def real_websocket() -> AsyncIterator[WsHarness]:
    connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
    refusals: list[int] = []

    async def handler(connection: ServerConnection) -> None:
        await connections.put(connection)
        await connection.wait_closed()

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if refusals:
            status = http.HTTPStatus(refusals.pop(0))
            return Response(status.value, status.phrase, Headers(), b"")
        return None

    async def accept() -> ServerEnd:
        return ServerEnd(await connections.get(), None)

    async with serve(
        handler, "127.0.0.1", 0, process_request=process_request, ping_interval=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield WsHarness(
            WebsocketsTransport(),
            f"ws://127.0.0.1:{port}/feed",
            ManualClock(),
            accept,
            refusals.append,
            lambda: f"ws://127.0.0.1:{closed_port()}/feed",
        )
        for connection in list(server.connections):
            connection.transport.abort()


@contextlib.asynccontextmanager
async def memory_websocket() -> AsyncIterator[WsHarness]:
    transport = MemoryWebSocket()
    url = "ws://provider.test/feed"

    async def accept() -> ServerEnd:
        return ServerEnd(None, await transport.accept())

    def unreachable() -> str:
        transport.refuse_next(0)
        return url

    yield WsHarness(transport, url, ManualClock(), accept, transport.refuse_next, unreachable)
