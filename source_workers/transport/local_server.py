"""A websockets server on 127.0.0.1 in a thread of its own: local stand-ins for providers.

The capture server of ``ingest dev --replay`` and the protocol-faithful test
providers (``tests/servers/``) are subclasses. They give ``_handler`` (a
websocket connection) and ``_http`` (plain HTTP requests: REST, or a
handshake check), and optionally ``_background`` tasks (e.g. heartbeats).
``with Server() as server:`` starts it and waits until it listens; leaving the
block aborts every connection and stops the loop. :meth:`call` runs a
coroutine on the server's loop from the caller's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from foundation.errors import StackError


class LocalServer:
    name = "local server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    async def _handler(self, connection: ServerConnection) -> None:
        raise NotImplementedError

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        return None

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        return []

    @property
    def open_connections(self) -> int:
        return len(self._server.connections) if self._server is not None else 0

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def __enter__(self) -> Self:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name=self.name, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise StackError(f"the {self.name} did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._http,
            max_size=2**20,
            ping_interval=None,
        ) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            tasks = [asyncio.create_task(c) for c in self._background()]
            self._ready.set()
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            for connection in list(server.connections):
                connection.transport.abort()
