"""The HTTP and websocket transport contract, identical for the real transports (against
in-process servers) and the in-memory ones: what arrives, and which error each fault is."""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from foundation.errors import (
    ConnectionLostError,
    MalformedFrameError,
    ProviderRefusedError,
    RateLimitedError,
)
from source_workers.transport.memory import Reply
from source_workers.transport.protocol import Stream, StreamStopped
from tests.contract.transports import (
    HttpHarness,
    WsHarness,
    memory_http,
    memory_websocket,
    real_http,
    real_websocket,
    settle,
)

# --- HTTP ----------------------------------------------------------------------


@pytest.fixture(params=["real", "memory"])
def web(request: pytest.FixtureRequest) -> Iterator[HttpHarness]:
    with real_http() if request.param == "real" else memory_http() as harness:
        yield harness


def fetch(web: HttpHarness, url: str, **kwargs: Any) -> Any:
    """One request, and the transport's connections closed, in one event loop."""

    async def once() -> Any:
        try:
            return await web.transport.get_json(url, **kwargs)
        finally:
            await web.transport.aclose()

    return asyncio.run(once())


def get(web: HttpHarness, path: str, reply: Reply | None = None, **kwargs: Any) -> Any:
    url = f"{web.base}{path}"
    if reply is not None:
        web.route(url, reply)
    return fetch(web, url, **kwargs)


def test_a_json_answer_is_decoded_and_the_request_carries_params_and_headers(
    web: HttpHarness,
) -> None:
    """200: the body decoded, headers lower-case; the server saw the query and the headers."""
    answer = get(
        web,
        "/trades",
        Reply(body=[{"trade_id": 1}], headers={"CB-After": "7"}),
        params={"limit": 2, "after": 9},
        headers={"apikey": "k"},
    )
    assert answer.status == 200 and answer.body == [{"trade_id": 1}]
    assert answer.headers["cb-after"] == "7"
    (seen,) = web.requests()
    assert seen.url == f"{web.base}/trades" and seen.params == {"limit": "2", "after": "9"}
    assert {k.lower(): v for k, v in seen.headers.items()}["apikey"] == "k"


def test_a_redirect_is_refused_and_not_followed(web: HttpHarness) -> None:
    """3xx: ProviderRefusedError naming the redirect; the new location is never asked."""
    with pytest.raises(ProviderRefusedError, match="redirected"):
        get(web, "/moved", Reply(status=302, headers={"Location": "http://127.0.0.2:9/steal"}))
    assert len(web.requests()) == 1


@pytest.mark.parametrize(
    ("retry_after", "seconds"), [("7", 7.0), ("86400", 300.0), (None, None), ("soon", None)]
)
def test_429_is_rate_limited_with_retry_after_capped(
    web: HttpHarness, retry_after: str | None, seconds: float | None
) -> None:
    """429: RateLimitedError with Retry-After in seconds, at most five minutes."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    with pytest.raises(RateLimitedError) as info:
        get(web, "/busy", Reply(status=429, headers=headers))
    assert info.value.retry_after_s == seconds and info.value.status == 429


def test_a_retry_after_date_is_counted_from_the_clock(web: HttpHarness) -> None:
    """Retry-After as an HTTP date: seconds from the transport's clock's wall time."""
    at = web.clock.wall_us() / 1e6 + 40
    date = email.utils.formatdate(at, usegmt=True)
    with pytest.raises(RateLimitedError) as info:
        get(web, "/busy", Reply(status=503, headers={"Retry-After": date}))
    assert info.value.retry_after_s == pytest.approx(40, abs=1)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ConnectionLostError),
        (502, ConnectionLostError),
        (408, ConnectionLostError),
        (503, RateLimitedError),
        (401, ProviderRefusedError),
        (404, ProviderRefusedError),
    ],
)
def test_statuses_are_the_errors_callers_act_on(
    web: HttpHarness, status: int, error: type[Exception]
) -> None:
    """5xx and 408 retry, 429/503 back off, other 4xx stop."""
    with pytest.raises(error, match=f"HTTP {status}"):
        get(web, f"/status{status}", Reply(status=status, body={"message": "no"}))


def test_a_path_nobody_serves_is_a_refusal(web: HttpHarness) -> None:
    """An unrouted URL answers 404 on both: ProviderRefusedError."""
    with pytest.raises(ProviderRefusedError, match="HTTP 404"):
        get(web, "/nothing-here")


def test_a_truncated_body_is_a_lost_connection(web: HttpHarness) -> None:
    """A body shorter than its Content-Length: ConnectionLostError (retried)."""
    with pytest.raises(ConnectionLostError, match="cut short") as info:
        get(web, "/cut", Reply(body=[{"a": 1}, {"b": 2}], truncate_to=5))
    assert info.value.reason == "truncated body"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" + b"1," * 1500 + b"1]", "over 2000 bytes"),
        (b"<html>", "not JSON"),
        (b'{"price": NaN}', "NaN"),
        (b"[" * 10 + b"]" * 10, "nested"),
    ],
)
def test_bodies_outside_the_frame_limits_are_malformed(
    web: HttpHarness, body: bytes, reason: str
) -> None:
    """Over max_frame_bytes, not JSON, NaN, nested too deep: MalformedFrameError."""
    with pytest.raises(MalformedFrameError, match=reason):
        get(web, "/odd", Reply(body=body))


def test_nothing_listening_is_a_lost_connection(web: HttpHarness) -> None:
    with pytest.raises(ConnectionLostError, match="request failed"):
        fetch(web, web.unreachable)


def test_a_url_that_is_not_http_is_refused(web: HttpHarness) -> None:
    with pytest.raises(ProviderRefusedError, match="not an http"):
        fetch(web, "ftp://127.0.0.1/x")


# --- websocket -----------------------------------------------------------------

Body = Callable[[WsHarness], Awaitable[None]]


@pytest.fixture(params=["real", "memory"])
def ws_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_ws(kind: str, body: Body) -> None:
    async def main() -> None:
        harness_cm = real_websocket() if kind == "real" else memory_websocket()
        async with harness_cm as harness:
            await asyncio.wait_for(body(harness), timeout=10)

    asyncio.run(main())


async def connect(ws: WsHarness, **options: Any) -> Stream:
    return await ws.transport.connect(
        ws.url + "?apikey=SECRET", {"X-Key": "v"}, ws.options(**options)
    )


def test_frames_arrive_in_order_and_json_goes_out_compact(ws_kind: str) -> None:
    """Server frames (text and bytes) arrive in order and pass on_frame; send_json is
    compact JSON; the server sees the URL and headers, the stream shows the URL masked."""
    seen: list[str | bytes] = []

    async def body(ws: WsHarness) -> None:
        stream = await connect(ws, on_frame=seen.append)
        server = await ws.accept()
        assert server.path == "/feed?apikey=SECRET" and server.header("x-key") == "v"
        assert "SECRET" not in stream.url
        await stream.send_json({"type": "subscribe", "ids": [1, 2]})
        assert await server.receive() == '{"type":"subscribe","ids":[1,2]}'
        for frame in ('{"a":1}', b'{"b":2}', '{"c":3}'):
            await server.send(frame)
        got = [await stream.recv() for _ in range(3)]
        assert got == ['{"a":1}', b'{"b":2}', '{"c":3}'] and seen == got
        await stream.close()

    run_ws(ws_kind, body)


def test_a_close_frame_ends_the_stream_after_what_was_sent(ws_kind: str) -> None:
    """Frames sent before the close are read; then ConnectionLostError with the code and
    reason; sending afterwards is ConnectionLostError too."""

    async def body(ws: WsHarness) -> None:
        async with await connect(ws) as stream:
            server = await ws.accept()
            await server.send('{"last":true}')
            await server.close(4000, "bye")
            assert await stream.recv() == '{"last":true}'
            with pytest.raises(ConnectionLostError, match=r"closed with code 4000 \(bye\)"):
                await stream.recv()
            with pytest.raises(ConnectionLostError, match="closed while sending"):
                await stream.send_json({"late": 1})

    run_ws(ws_kind, body)


def test_a_stream_the_client_closed_reads_and_sends_nothing(ws_kind: str) -> None:
    """After close(): recv and send_json are ConnectionLostError (code 1000), and the server
    sees the connection end."""

    async def body(ws: WsHarness) -> None:
        stream = await connect(ws)
        server = await ws.accept()
        await stream.close()
        await server.closed()
        with pytest.raises(ConnectionLostError, match="closed with code 1000"):
            await stream.recv()
        with pytest.raises(ConnectionLostError, match="closed while sending"):
            await stream.send_json({"late": 1})

    run_ws(ws_kind, body)


def test_a_drop_without_a_close_frame_is_a_lost_connection(ws_kind: str) -> None:
    async def body(ws: WsHarness) -> None:
        async with await connect(ws) as stream:
            server = await ws.accept()
            server.drop()
            with pytest.raises(ConnectionLostError, match="dropped without a close frame"):
                await stream.recv()

    run_ws(ws_kind, body)


def test_silence_is_lost_after_the_idle_timeout_on_the_clock(ws_kind: str) -> None:
    """No frame for idle_timeout_s of the stream's clock while a recv waits: ConnectionLostError.
    The clock is a manual one: nothing happens until it is moved past the timeout."""

    async def body(ws: WsHarness) -> None:
        async with await connect(ws, idle_timeout_s=30.0) as stream:
            await ws.accept()
            waiting = asyncio.ensure_future(stream.recv())
            await settle()
            ws.clock.advance(29.0)
            await settle()
            assert not waiting.done()
            ws.clock.advance(1.0)
            with pytest.raises(ConnectionLostError, match=r"no frame for 30 s \(idle timeout\)"):
                await waiting

    run_ws(ws_kind, body)


def test_the_runtime_stopping_ends_the_stream(ws_kind: str) -> None:
    """The stop event ends a waiting recv with StreamStopped, and iteration simply ends."""

    async def body(ws: WsHarness) -> None:
        async with await connect(ws) as stream:
            server = await ws.accept()
            await server.send('{"a":1}')
            frames = []

            async def read() -> None:
                async for frame in stream:
                    frames.append(frame)

            reading = asyncio.ensure_future(read())
            while not frames:
                await asyncio.sleep(0)
            ws.stop.set()
            await reading
            assert frames == ['{"a":1}']
            with pytest.raises(StreamStopped):
                await stream.recv()

    run_ws(ws_kind, body)


def test_a_frame_over_the_limit_is_received_and_a_huge_one_closes_with_1009(
    ws_kind: str,
) -> None:
    """Up to four times max_frame_bytes arrives (the runtime dead-letters what is over the
    limit); beyond that the connection closes with 1009 before buffering it."""

    async def body(ws: WsHarness) -> None:
        async with await connect(ws, max_frame_bytes=1_024) as stream:
            server = await ws.accept()
            big = json.dumps({"pad": "x" * 3_000})
            await server.send(big)
            assert await stream.recv() == big
            await server.send(json.dumps({"pad": "x" * 5_000}))
            with pytest.raises(ConnectionLostError, match="1009"):
                await stream.recv()

    run_ws(ws_kind, body)


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, ProviderRefusedError), (429, ConnectionLostError), (503, ConnectionLostError)],
)
def test_a_refused_handshake_is_the_error_callers_act_on(
    ws_kind: str, status: int, error: type[Exception]
) -> None:
    """A 4xx (but 408 and 429) handshake stops; 429 and 5xx are retried."""

    async def body(ws: WsHarness) -> None:
        ws.refuse_next(status)
        with pytest.raises(error, match=f"HTTP {status}"):
            await connect(ws)
        stream = await connect(ws)  # the next handshake is accepted
        await stream.close()

    run_ws(ws_kind, body)


def test_nothing_listening_and_a_wrong_scheme(ws_kind: str) -> None:
    """Nothing listening: ConnectionLostError (retry); not ws(s)://: ProviderRefusedError."""

    async def body(ws: WsHarness) -> None:
        with pytest.raises(ConnectionLostError, match="cannot connect"):
            await ws.transport.connect(ws.unreachable(), None, ws.options())
        with pytest.raises(ProviderRefusedError, match="not a websocket URL"):
            await ws.transport.connect("http://127.0.0.1:1/feed", None, ws.options())

    run_ws(ws_kind, body)


@pytest.mark.parametrize("compression", [True, False])
def test_permessage_deflate_is_offered_only_when_asked(compression: bool) -> None:
    """``websocket_compression = "none"`` reaches the handshake: no deflate is offered,
    so frames arrive uncompressed (the real transport only; memory has no wire)."""

    async def body(ws: WsHarness) -> None:
        stream = await connect(ws, compression=compression)
        server = await ws.accept()
        offered = server.header("sec-websocket-extensions") or ""
        assert ("permessage-deflate" in offered) is compression
        await server.send('{"a":1}')
        assert await stream.recv() == '{"a":1}'
        await stream.close()

    run_ws("real", body)
