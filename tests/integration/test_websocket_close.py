"""The closing handshake ends within its timeout whatever the server does: a server that
sends a frame over the limit and then ignores the close frame (a test server mode the
websockets library cannot play, so it is a raw socket here) loses the connection in
seconds, not after the idle timeout."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import struct
import time

import pytest

from foundation.errors import ConnectionLostError
from source_workers.transport.websocket import CLOSE_TIMEOUT_S, open_stream

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def deaf_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the websocket, sends the header of a 5 MB text frame, then reads nothing and
    answers nothing: the close frame the client sends goes unanswered."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += await reader.read(4096)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    writer.write(bytes([0x81, 127]) + struct.pack("!Q", 5_000_000) + b"x" * 1000)
    await writer.drain()
    try:
        await asyncio.sleep(120)
    finally:
        writer.close()


def test_an_unanswered_close_after_an_oversized_frame_ends_within_the_close_timeout() -> None:
    async def main() -> tuple[ConnectionLostError, float]:
        server = await asyncio.start_server(deaf_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stream = await open_stream(
            f"ws://127.0.0.1:{port}/",
            source="deaf",
            max_frame_bytes=1_048_576,
            connect_timeout_s=5,
            idle_timeout_s=30,
            stop=asyncio.Event(),
        )
        started = time.monotonic()
        try:
            with pytest.raises(ConnectionLostError) as info:
                await stream.recv()
            return info.value, time.monotonic() - started
        finally:
            await stream.close()
            server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()  # the deaf handler: it closes its side
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await server.wait_closed()

    error, seconds = asyncio.run(main())
    assert "closed with code 1009" in str(error)
    assert f"did not answer the close within {CLOSE_TIMEOUT_S:g} s" in str(error)
    assert seconds < 10  # the close timeout and the watchdog's tick; the idle timeout is 30 s
