"""In-memory provider transports: a scripted REST server and a websocket the test plays.

Real code that ships, like the in-memory staging provider: a connector runs on
them without a socket, a thread or a sleep, and they pass the same contract
suite as the real transports (``tests/contract/test_transport_contract.py``),
raising the same errors for the same answers (:mod:`.answers` decides both).

* :class:`MemoryHttp` (an :class:`~.protocol.HttpTransport`) answers from
  routes: a URL (without its query) and the :class:`Reply`\\ s it gives, in
  order (the last one repeats), or a function of the :class:`HttpRequest`.
  Statuses, ``Retry-After``, redirects, truncated and oversized bodies mean
  what they mean from a server; a URL without a route answers 404. Every
  request is kept in ``requests``; :meth:`MemoryHttp.wait_requests` waits for
  the n-th.
* :class:`MemoryWebSocket` (a :class:`~.protocol.WebSocketTransport`): each
  ``connect`` makes a :class:`MemoryConnection`, the server's end, which the
  test takes with :meth:`MemoryWebSocket.accept`. The test sends frames into
  it, reads what the client sent, closes it (a close frame) or drops it (no
  close frame); :meth:`MemoryWebSocket.refuse_next` makes a handshake fail.
  The client's idle timeout follows the stream's clock: on a
  :class:`~foundation.clock.ManualClock` a silent socket is lost only when the
  test moves time past ``idle_timeout_s``.

Everything runs on the caller's event loop; neither side may be used from
another thread.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import ConnectionLostError, ProviderRefusedError
from source_workers.frames import FrameLimits
from source_workers.transport.answers import check_url, handshake_error, read_body, status_error
from source_workers.transport.protocol import HttpResponse, StreamBase, StreamOptions, StreamStopped
from source_workers.transport.urls import masked_url

# --- HTTP --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as the server saw it."""

    url: str
    """Without the query."""
    params: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What the server answers: a status, headers and a body.

    ``body``: bytes or text as they are, anything else as JSON. ``truncate_to``
    sends only that many bytes of it while ``Content-Length`` announces all.
    ``status=0`` is no answer at all: the connection was refused.
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    truncate_to: int | None = None

    @classmethod
    def refused(cls) -> Reply:
        return cls(status=0)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


Handler = Callable[[HttpRequest], Reply]


class MemoryHttp:
    """A scripted REST server behind the HTTP transport's Protocol."""

    def __init__(
        self,
        *,
        source: str = "memory",
        limits: FrameLimits | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._source = source
        self._limits = limits or FrameLimits()
        self._clock = clock
        """Reads the time a ``Retry-After`` date is counted from."""
        self._routes: dict[str, deque[Reply] | Handler] = {}
        self.requests: list[HttpRequest] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def route(self, url: str, *replies: Reply | Handler) -> None:
        """Answer ``url`` with ``replies`` in order (the last repeats), or with a handler."""
        if len(replies) == 1 and callable(replies[0]):
            self._routes[url] = replies[0]
            return
        if not replies or not all(isinstance(r, Reply) for r in replies):
            raise ValueError("route(url, *replies): one handler, or one Reply or more")
        self._routes[url] = deque(r for r in replies if isinstance(r, Reply))

    async def aclose(self) -> None:
        """Nothing to release."""

    def requests_to(self, url: str) -> list[HttpRequest]:
        return [r for r in self.requests if r.url == url]

    async def wait_requests(self, count: int) -> list[HttpRequest]:
        """Wait until ``count`` requests were made in all; the requests so far."""
        if len(self.requests) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            await future
        return list(self.requests)

    def _answer(self, request: HttpRequest) -> Reply:
        route = self._routes.get(request.url)
        if route is None:
            return Reply(status=404, body={"message": "NotFound"})
        if isinstance(route, deque):
            return route.popleft() if len(route) > 1 else route[0]
        return route(request)

    async def get_json(
        self,
        url: str,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        shown = masked_url(url + ("?" + urlencode(params) if params else ""))
        check_url(self._source, url, shown)
        await asyncio.sleep(0)  # a request is a suspension point, as a real one is
        request = HttpRequest(
            url, {k: str(v) for k, v in (params or {}).items()}, dict(headers or {})
        )
        self.requests.append(request)
        for waiter in [w for w in self._waiters if w[0] <= len(self.requests)]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(None)
        reply = self._answer(request)
        if reply.status == 0:
            raise ConnectionLostError(
                f"{shown}: request failed: [Errno 111] Connection refused",
                url=shown,
                reason="[Errno 111] Connection refused",
            )
        payload = reply.payload()
        reply_headers = {k.lower(): v for k, v in reply.headers.items()}
        reply_headers.setdefault("content-length", str(len(payload)))
        error = status_error(
            self._source, shown, reply.status, reply_headers, self._clock.wall_us() / 1e6
        )
        if error is not None:
            raise error
        if reply.truncate_to is not None:
            payload = payload[: reply.truncate_to]
        body = read_body(
            self._source,
            shown,
            payload[: self._limits.max_bytes + 1],
            reply_headers.get("content-length"),
            self._limits,
        )
        return HttpResponse(reply.status, reply_headers, body)


# --- websocket -----------------------------------------------------------------


class MemoryConnection:
    """The server's end of one in-memory websocket."""

    def __init__(self, url: str, headers: Mapping[str, str], options: StreamOptions) -> None:
        self.url = url
        self.headers = dict(headers)
        self._options = options
        self._frames: deque[str | bytes] = deque()
        self._arrived = asyncio.Event()
        self.ended: str | None = None
        """Why the connection ended (None while open), as the client reports it."""
        self.received: list[str] = []
        """Every message the client sent, in order."""
        self._read = 0
        self._client_sent = asyncio.Event()
        self.closed_by_client = False

    # the test's side

    @property
    def open(self) -> bool:
        return self.ended is None and not self.closed_by_client

    def send(self, frame: str | bytes) -> None:
        """A frame to the client (ignored once the connection ended). A frame over four
        times ``max_frame_bytes`` closes the connection with 1009, as the real one does."""
        if not self.open:
            return
        limit = self._options.max_frame_bytes * 4
        size = len(frame.encode() if isinstance(frame, str) else frame)
        if size > limit:
            self._end(f"closed with code 1009 (frame with {size} bytes exceeds limit of {limit})")
            return
        self._frames.append(frame)
        self._arrived.set()

    def send_json(self, message: Any) -> None:
        self.send(json.dumps(message, separators=(",", ":")))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """End with a close frame; the client reads what was sent before it first."""
        self._end(f"closed with code {code}" + (f" ({reason})" if reason else ""))

    def drop(self) -> None:
        """End without a close frame (a dropped TCP connection)."""
        self._end("connection dropped without a close frame")

    async def receive(self) -> str:
        """The next message the client sent (waits for it)."""
        while self._read >= len(self.received):
            self._client_sent.clear()
            await self._client_sent.wait()
        self._read += 1
        return self.received[self._read - 1]

    async def receive_json(self) -> Any:
        return json.loads(await self.receive())

    # the client's side

    def _end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
        self._arrived.set()
        self._client_sent.set()

    def _from_client(self, text: str) -> None:
        self.received.append(text)
        self._client_sent.set()


class MemoryStream(StreamBase):
    """The client's end: what :meth:`MemoryWebSocket.connect` returns (a
    :class:`~.protocol.Stream`)."""

    def __init__(self, connection: MemoryConnection, options: StreamOptions) -> None:
        self._connection = connection
        self._options = options
        self.url = masked_url(connection.url)

    async def send_json(self, message: Any) -> None:
        connection = self._connection
        if connection.closed_by_client or connection.ended is not None:
            why = connection.ended or "closed with code 1000"
            raise self._lost(f"closed while sending: {why}")
        connection._from_client(json.dumps(message, separators=(",", ":")))

    async def recv(self) -> str | bytes:
        """The next frame; raises ConnectionLostError, or StreamStopped when stopping."""
        options, connection = self._options, self._connection
        if options.stop.is_set():
            raise StreamStopped
        if connection.closed_by_client:
            raise self._lost("closed with code 1000")
        deadline = options.clock.monotonic() + options.idle_timeout_s
        while True:
            if connection._frames:
                frame = connection._frames.popleft()
                if options.on_frame is not None:
                    options.on_frame(frame)
                return frame
            if connection.ended is not None:
                raise self._lost(connection.ended)
            connection._arrived.clear()
            remaining = deadline - options.clock.monotonic()
            if remaining <= 0:
                connection._end(f"no frame for {options.idle_timeout_s:g} s (idle timeout)")
                connection._frames.clear()
                continue
            await self._wait(remaining)
            if options.stop.is_set():
                raise StreamStopped

    async def _wait(self, seconds: float) -> None:
        """Until a frame or the end arrives, the runtime stops, or ``seconds`` passed."""
        waits = [
            asyncio.ensure_future(self._connection._arrived.wait()),
            asyncio.ensure_future(self._options.stop.wait()),
            asyncio.ensure_future(self._options.clock.sleep(seconds)),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def close(self) -> None:
        self._connection.closed_by_client = True
        self._connection._client_sent.set()


class MemoryWebSocket:
    """An in-memory provider websocket server behind the websocket transport's Protocol."""

    def __init__(self) -> None:
        self.connections: list[MemoryConnection] = []
        """Every connection made, in order."""
        self._accepted = 0
        self._refusals: deque[int] = deque()
        self._connected = asyncio.Event()

    def refuse_next(self, status: int) -> None:
        """The next handshake fails: answered with HTTP ``status`` (0: nothing listens)."""
        self._refusals.append(status)

    async def accept(self) -> MemoryConnection:
        """The next connection not yet accepted (waits for the client to connect)."""
        while self._accepted >= len(self.connections):
            self._connected.clear()
            await self._connected.wait()
        self._accepted += 1
        return self.connections[self._accepted - 1]

    async def connect(
        self, url: str, headers: Mapping[str, str] | None, options: StreamOptions
    ) -> MemoryStream:
        shown = masked_url(url)
        if not url.lower().startswith(("ws://", "wss://")):
            raise ProviderRefusedError(
                f"source {options.source}: {shown} is not a websocket URL",
                source=options.source,
                reason="bad url",
            )
        await asyncio.sleep(0)  # a handshake is a suspension point, as a real one is
        if self._refusals:
            status = self._refusals.popleft()
            if status == 0:
                reason = "Connect call failed"
                raise ConnectionLostError(
                    f"websocket {shown}: cannot connect: {reason}", url=shown, reason=reason
                )
            raise handshake_error(options.source, shown, status)
        connection = MemoryConnection(url, headers or {}, options)
        self.connections.append(connection)
        self._connected.set()
        return MemoryStream(connection, options)
