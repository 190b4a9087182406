"""A local websocket that plays a captured feed: ``ingest dev <connector> --replay``.

:class:`CaptureServer` listens on 127.0.0.1 in a thread of its own. A client
connects and sends its first message (a subscribe, a join); from then on the
server sends the capture's frames in order, paced as they were recorded
(divided by ``speed``). Like a live feed it does not rewind: a client that
reconnects gets the frames not sent yet (late: pacing keeps the capture's
clock), so a replay tests the pipeline, not the connector's gap handling. Once every frame is
sent, the connection stays open and quiet; :attr:`finished` is set.

Plain HTTP requests (a connector's REST backfill) answer 404: a capture has
no REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import CaptureError
from source_workers.capture import CaptureFile, Frame
from source_workers.transport.local_server import LocalServer

log = logging.getLogger(__name__)
FIRST_MESSAGE_WAIT_S = 2.0
"""How long a new connection may stay silent before frames flow anyway."""


class CaptureServer(LocalServer):
    """``with CaptureServer(capture) as server:`` plays it at ``server.ws_url``."""

    name = "capture server"

    def __init__(
        self, capture: CaptureFile, *, speed: float = 1.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if not speed > 0:
            raise CaptureError(f"--speed must be above 0, not {speed}")
        super().__init__()
        self.capture = capture
        self.speed = speed
        self._clock = clock
        """Paces the frames (a manual clock plays them as the test moves it)."""
        self.sent = 0
        self.connections = 0
        self.rest_requests = 0
        self.finished = threading.Event()
        self.error: str | None = None
        self._frames: Iterator[Frame] = capture.frames()
        self._pending: Frame | None = None
        self._clock_zero: float | None = None  # monotonic time of the capture's t = 0
        self._sending = asyncio.Lock()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _http(self, _connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        self.rest_requests += 1
        body = json.dumps({"message": "a capture replay has no REST API"}).encode()
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
        return Response(http.HTTPStatus.NOT_FOUND.value, "Not Found", headers, body)

    async def _handler(self, connection: ServerConnection) -> None:
        self.connections += 1
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await asyncio.wait_for(connection.recv(), timeout=FIRST_MESSAGE_WAIT_S)
        try:
            async with self._sending:  # one connection plays at a time, like one feed
                await self._play(connection)
            await connection.wait_closed()
        except ConnectionClosed:
            pass
        except CaptureError as exc:
            self.error = str(exc)
            log.error("%s", exc)
            await connection.close(1011, "bad capture")

    async def _play(self, connection: ServerConnection) -> None:
        while True:
            frame = self._pending or next(self._frames, None)
            if frame is None:
                self.finished.set()
                return
            self._pending = frame
            now = self._clock.monotonic()
            if self._clock_zero is None:
                self._clock_zero = now - frame.at_s / self.speed
            delay = self._clock_zero + frame.at_s / self.speed - now
            if delay > 0:
                await self._clock.sleep(delay)
            await connection.send(frame.data)
            self._pending = None
            self.sent += 1

    def status(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "finished": self.finished.is_set(),
            "connections": self.connections,
            "rest_requests": self.rest_requests,
            "error": self.error,
        }
