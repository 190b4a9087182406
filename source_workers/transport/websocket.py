"""A provider websocket: frames in, JSON out, silence and drops as errors.

:class:`WebsocketsTransport` is the real
:class:`~source_workers.transport.protocol.WebSocketTransport`, on the websockets
library. :func:`open_stream` connects with a protocol-level frame cap (four times the
accepted frame size, so that a frame somewhat over the limit can still be
received and dead-lettered, while a huge one closes the connection before it
is buffered) and an idle timeout on the runtime's clock: ``recv`` raises
:class:`ConnectionLostError` when no frame arrived for ``idle_timeout_s``,
because a silent socket is a dead socket. The stream stops at once when the
runtime is stopping. Every websockets exception is translated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.protocol import State

from foundation.clock import SYSTEM_CLOCK, Clock, wait_event
from foundation.errors import ConnectionLostError, ProviderRefusedError
from source_workers.transport.answers import handshake_error
from source_workers.transport.protocol import StreamBase, StreamOptions, StreamStopped
from source_workers.transport.urls import masked_url, secret_values

__all__ = [
    "CLOSE_TIMEOUT_S",
    "StreamStopped",
    "WebSocketStream",
    "WebsocketsTransport",
    "open_stream",
]


class _ScrubbingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The websockets library logs request lines (with the URL's query) at DEBUG:
    replace the URL's secret values before anything is written."""

    def __init__(self, logger: logging.Logger, secrets: list[str]) -> None:
        super().__init__(logger, {})
        self._secrets = [s for s in secrets if s]

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        self.logger.log(level, "%s", text, **kwargs)


CLOSE_TIMEOUT_S = 2.0
"""The longest a closing handshake may take, answered or not."""


class WebSocketStream(StreamBase):
    """One open provider websocket.

    Reading is the library's own ``recv`` (no task per frame); a watchdog task
    closes the connection when a ``recv`` waited ``idle_timeout_s`` without a
    frame, or when the runtime stops, which ends the read with
    ConnectionLostError (silence) or StreamStopped (stop).
    """

    def __init__(
        self,
        connection: ClientConnection,
        url: str,
        idle_timeout_s: float,
        stop: asyncio.Event,
        on_frame: Callable[[str | bytes], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._connection = connection
        self._clock = clock
        self._on_frame = on_frame
        """Called with every frame received (``--record`` writes a capture with it)."""
        self.url = masked_url(url)
        self._idle_timeout_s = idle_timeout_s
        self._stop = stop
        self._waiting_since: float | None = None
        """When the current ``recv`` started waiting (None: not waiting). Silence is
        counted only while waiting, so time spent processing (backpressure from
        staging) never looks like a dead socket."""
        self._ended: str | None = None
        self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        interval = min(0.5, self._idle_timeout_s / 4)
        closing_since: float | None = None
        while True:
            if not await wait_event(self._clock, self._stop, interval):
                now = self._clock.monotonic()
                waiting = self._waiting_since
                if waiting is not None and now - waiting >= self._idle_timeout_s:
                    self._ended = "idle"
                    self._connection.transport.abort()
                    return
                # A closing handshake the server never answers (it sent a frame over the
                # limit, say, and went deaf) ends within CLOSE_TIMEOUT_S, whatever the
                # library waits for.
                if self._connection.state is State.CLOSING:
                    closing_since = closing_since if closing_since is not None else now
                    if now - closing_since >= CLOSE_TIMEOUT_S:
                        self._ended = "close timeout"
                        self._connection.transport.abort()
                        return
                continue
            self._ended = "stopped"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), timeout=2)
            self._connection.transport.abort()
            return

    async def send_json(self, message: Any) -> None:
        try:
            await self._connection.send(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed as exc:
            raise self._lost(f"closed while sending: {_closed(exc)}") from None

    async def recv(self) -> str | bytes:
        """The next frame; raises ConnectionLostError, or StreamStopped when stopping."""
        if self._ended == "stopped" or self._stop.is_set():
            raise StreamStopped
        self._waiting_since = self._clock.monotonic()
        try:
            frame = await self._connection.recv()
        except ConnectionClosed as exc:
            if self._ended == "stopped" or self._stop.is_set():
                raise StreamStopped from None
            if self._ended == "idle":
                raise self._lost(
                    f"no frame for {self._idle_timeout_s:g} s (idle timeout)"
                ) from None
            if self._ended == "close timeout":
                raise self._lost(
                    f"{_closed(exc)}; the server did not answer the close within "
                    f"{CLOSE_TIMEOUT_S:g} s"
                ) from None
            raise self._lost(_closed(exc)) from None
        finally:
            self._waiting_since = None
        if self._on_frame is not None:
            self._on_frame(frame)
        return frame

    async def close(self) -> None:
        self._watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watchdog
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._connection.close(), timeout=2)
        self._connection.transport.abort()


def _closed(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection dropped without a close frame"
    return f"closed with code {frame.code}" + (f" ({frame.reason})" if frame.reason else "")


async def open_stream(
    url: str,
    *,
    source: str,
    max_frame_bytes: int,
    connect_timeout_s: float,
    idle_timeout_s: float,
    stop: asyncio.Event,
    headers: dict[str, str] | None = None,
    on_frame: Callable[[str | bytes], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    compression: bool = True,
) -> WebSocketStream:
    """Connect; raises ConnectionLostError (retry) or ProviderRefusedError (4xx but 429)."""
    shown = masked_url(url)
    try:
        connection = await connect(
            url,
            max_size=max_frame_bytes * 4,
            compression="deflate" if compression else None,
            open_timeout=connect_timeout_s,
            # No library keepalive: while processing waits on staging the library stops
            # reading, misses the pong and would drop a healthy connection. The watchdog
            # (silence while waiting for a frame) and the providers' heartbeats detect
            # dead sockets instead.
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT_S,
            additional_headers=headers,
            user_agent_header="durable-ingest",
            logger=_ScrubbingLogger(logging.getLogger("websockets.client"), secret_values(url)),
        )
    except InvalidURI:
        raise ProviderRefusedError(
            f"source {source}: {shown} is not a websocket URL", source=source, reason="bad url"
        ) from None
    except InvalidStatus as exc:
        raise handshake_error(source, shown, exc.response.status_code) from None
    except (InvalidHandshake, WebSocketException) as exc:
        raise ConnectionLostError(
            f"websocket {shown}: handshake failed: {exc}", url=shown, reason="handshake"
        ) from None
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConnectionLostError(
            f"websocket {shown}: cannot connect: {reason}", url=shown, reason=reason
        ) from None
    return WebSocketStream(connection, url, idle_timeout_s, stop, on_frame, clock)


class WebsocketsTransport:
    """The real websocket transport: :func:`open_stream` with the runtime's options."""

    async def connect(
        self, url: str, headers: Mapping[str, str] | None, options: StreamOptions
    ) -> WebSocketStream:
        return await open_stream(
            url,
            source=options.source,
            max_frame_bytes=options.max_frame_bytes,
            connect_timeout_s=options.connect_timeout_s,
            idle_timeout_s=options.idle_timeout_s,
            stop=options.stop,
            headers=dict(headers) if headers else None,
            on_frame=options.on_frame,
            clock=options.clock,
            compression=options.compression,
        )
