"""The provider HTTP client against a local server: redirects, broken bodies, rate limits."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from foundation.errors import (
    ConnectionLostError,
    MalformedFrameError,
    ProviderRefusedError,
    RateLimitedError,
)
from source_workers.frames import FrameLimits
from source_workers.transport.http import HttpClient, retry_after_seconds

SEEN: list[dict[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        SEEN.append(dict(self.headers))
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:9/steal")
            self.end_headers()
        elif self.path.startswith("/truncated"):
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'[{"a": 1')
        elif self.path.startswith("/busy"):
            self.send_response(429)
            self.send_header("Retry-After", "86400")
            self.end_headers()
        elif self.path.startswith("/gzip"):
            size = 5000 if self.path.startswith("/gzip-bomb") else 10
            body = gzip.compress(b"[" + b"1," * size + b"1]")
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/big"):
            body = b"[" + b"1," * 5000 + b"1]"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url: str) -> object:
    client = HttpClient(
        source="s", limits=FrameLimits(max_bytes=2_000), timeout_s=5, user_agent="t"
    )

    async def once() -> object:
        try:
            return await client.get_json(url, headers={"apikey": "SECRET"})
        finally:
            await client.aclose()

    return asyncio.run(once())


def test_redirects_are_refused_so_keys_never_travel(base: str) -> None:
    """A 302 is not followed (urllib would send the key to the new host): one clear error."""
    SEEN.clear()
    with pytest.raises(ProviderRefusedError, match="redirected"):
        get(f"{base}/redirect")
    assert len(SEEN) == 1


def test_a_truncated_body_is_a_lost_connection(base: str) -> None:
    """IncompleteRead and friends become ConnectionLostError (retried), not a crash."""
    with pytest.raises(ConnectionLostError):
        get(f"{base}/truncated")


def test_rate_limits_are_capped(base: str) -> None:
    """A Retry-After of a day is followed for at most five minutes."""
    with pytest.raises(RateLimitedError) as info:
        get(f"{base}/busy")
    assert info.value.retry_after_s == 300.0


def test_a_body_over_the_limit_is_malformed(base: str) -> None:
    """Bodies over max_frame_bytes are refused by size, with the reason."""
    with pytest.raises(MalformedFrameError, match="over 2000 bytes"):
        get(f"{base}/big")


def test_a_compressed_body_is_decoded_and_capped_after_decoding(base: str) -> None:
    """httpx asks for and decodes gzip; the size limit counts the decoded bytes, so a small
    compressed body that expands past max_frame_bytes is refused, not buffered whole."""
    assert get(f"{base}/gzip").body == [1] * 11  # type: ignore[attr-defined]
    with pytest.raises(MalformedFrameError, match="over 2000 bytes"):
        get(f"{base}/gzip-bomb")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), ("²", None), ("soon", None), ("", None), ("999999999", 300.0)],
)
def test_retry_after_values(value: str, seconds: float | None) -> None:
    """Delta-seconds are read, capped; nonsense is ignored rather than raised."""
    assert retry_after_seconds(value, 0.0) == seconds
