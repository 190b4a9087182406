"""The two provider transports as Protocols: what the runtime and connectors rely on.

A source reaches its provider through an :class:`HttpTransport` (REST) and a
:class:`WebSocketTransport` (a feed). The Durable Runtime is handed one of each
(by default the real ones: :class:`~source_workers.transport.http.HttpClient`
and :class:`~source_workers.transport.websocket.WebsocketsTransport`); tests
hand it the in-memory ones of :mod:`source_workers.transport.memory`, which
pass the same contract suite (``tests/contract/test_transport_contract.py``).

Errors, the same from every implementation (:mod:`foundation.errors`):

* :class:`~foundation.errors.ConnectionLostError` (retry): refused or dropped
  connections, timeouts, HTTP 5xx and 408, truncated bodies, a websocket closed
  or silent for ``idle_timeout_s`` while a ``recv`` waited, a frame over four
  times ``max_frame_bytes`` (the connection closes with 1009);
* :class:`~foundation.errors.RateLimitedError` (back off): HTTP 429 and 503,
  with ``retry_after_s`` from ``Retry-After`` (capped);
* :class:`~foundation.errors.ProviderRefusedError` (stop): other 4xx, redirects
  (never followed), a URL of the wrong scheme, a websocket handshake refused
  with a 4xx other than 408 and 429;
* :class:`~foundation.errors.MalformedFrameError` (dead-letter): an HTTP body
  over ``max_frame_bytes``, not JSON, NaN, or nested too deep.

A stream raises :class:`StreamStopped` from ``recv`` once the runtime's stop
event is set (its iteration simply ends).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import ConnectionLostError


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    """Lower-case header names."""
    body: Any
    """The decoded JSON body."""


class StreamStopped(Exception):
    """The runtime is stopping: leave the read loop."""


class HttpTransport(Protocol):
    """REST for a source: one GET with a JSON answer."""

    async def get_json(
        self,
        url: str,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """The decoded body of a 2xx answer; raises the errors of the module docstring."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections (the runtime calls it as it ends); a later request
        opens new ones."""
        ...


class Stream(Protocol):
    """One open provider websocket: JSON out, frames in, until it drops or the runtime stops."""

    url: str
    """The URL with secrets masked (for messages)."""

    async def send_json(self, message: Any) -> None:
        """Send one text frame of compact JSON; ConnectionLostError if the socket closed."""
        ...

    async def recv(self) -> str | bytes:
        """The next frame; raises ConnectionLostError, or StreamStopped when stopping."""
        ...

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> str | bytes: ...

    async def close(self) -> None:
        """Close (a closing handshake, bounded); never raises."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class StreamBase:
    """What every :class:`Stream` implementation shares: async iteration over
    ``recv`` (ending when the runtime stops), ``async with`` closing it, and the
    lost-connection error naming the masked URL. A subclass sets ``url`` and
    defines ``recv`` and ``close``."""

    url: str

    async def recv(self) -> str | bytes:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except StreamStopped:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _lost(self, reason: str) -> ConnectionLostError:
        return ConnectionLostError(f"websocket {self.url}: {reason}", url=self.url, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOptions:
    """How the runtime wants a stream opened: limits, timers, and its stop."""

    source: str
    max_frame_bytes: int
    """Frames up to four times this are received (and dead-lettered by the runtime if
    over it); a larger one closes the connection."""
    connect_timeout_s: float
    idle_timeout_s: float
    """A ``recv`` that waited this long without a frame raises ConnectionLostError."""
    stop: asyncio.Event
    clock: Clock = SYSTEM_CLOCK
    """The idle timer's clock."""
    on_frame: Callable[[str | bytes], None] | None = None
    """Called with every frame received (``--record`` writes a capture with it)."""
    compression: bool = True
    """Offer permessage-deflate (the provider may still decline it)."""


class WebSocketTransport(Protocol):
    """Opens provider websockets."""

    async def connect(
        self, url: str, headers: Mapping[str, str] | None, options: StreamOptions
    ) -> Stream:
        """An open stream; raises ConnectionLostError (retry) or ProviderRefusedError."""
        ...
