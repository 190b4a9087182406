"""Provider HTTP (REST) requests: JSON bodies within limits, errors translated.

:class:`HttpClient` is the real :class:`~source_workers.transport.protocol.HttpTransport`,
on httpx: native async (no thread per request) and one connection pool per
client, closed by :meth:`HttpClient.aclose` (the runtime calls it when it ends).
:meth:`HttpClient.get_json` returns the decoded body and the response headers,
or raises:

* :class:`RateLimitedError` for 429 and 503 (with ``Retry-After`` when given);
* :class:`ConnectionLostError` for other 5xx, timeouts, refused connections and
  broken responses (truncated bodies, bad status lines);
* :class:`ProviderRefusedError` for other 4xx (a wrong product, a bad key) and
  for redirects, which are never followed (the key headers would go along);
* :class:`MalformedFrameError` for a body over the size limit or not JSON.

The body is read only up to one byte over ``max_frame_bytes`` (after any
content decoding, so a compressed body cannot expand past the limit). What a
status or a body means is decided in :mod:`.answers`, shared with the in-memory
transport; httpx's exceptions are translated here and nowhere else. The caller
decides how long to keep retrying; this module never sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from urllib.parse import urlencode

import httpx

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import ConnectionLostError
from source_workers.frames import FrameLimits
from source_workers.transport.answers import (
    MAX_RETRY_AFTER_S,
    check_url,
    read_body,
    retry_after_seconds,
    status_error,
)
from source_workers.transport.protocol import HttpResponse
from source_workers.transport.urls import masked_url

__all__ = ["MAX_RETRY_AFTER_S", "HttpClient", "HttpResponse", "retry_after_seconds"]

# httpx logs every request line at INFO, with the URL's query (where a key may travel), and
# httpcore traces at DEBUG: a worker logs its own lines about REST, with URLs masked.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class HttpClient:
    """The real HTTP transport: an httpx ``AsyncClient`` that follows no redirect."""

    def __init__(
        self,
        *,
        source: str,
        limits: FrameLimits,
        timeout_s: float,
        user_agent: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._source = source
        self._limits = limits
        self._timeout_s = timeout_s
        self._user_agent = user_agent
        self._clock = clock
        """Reads the time a ``Retry-After`` date is counted from."""
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _pool(self) -> httpx.AsyncClient:
        """The client of the running loop (a pool belongs to one event loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                timeout=httpx.Timeout(self._timeout_s),
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the pooled connections (a later request opens new ones)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    async def get_json(
        self,
        url: str,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        full = url + ("?" + urlencode(params) if params else "")
        shown = masked_url(full)
        check_url(self._source, full, shown)
        received = bytearray()
        reading = False
        try:
            async with self._pool().stream("GET", full, headers=dict(headers or {})) as response:
                status = response.status_code
                response_headers = {k.lower(): v for k, v in response.headers.items()}
                error = status_error(
                    self._source, shown, status, response_headers, self._clock.wall_us() / 1e6
                )
                if error is not None:
                    raise error
                reading = True
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if len(received) > self._limits.max_bytes:
                        break  # over the limit: read no further
        except httpx.RemoteProtocolError as exc:
            if reading:  # the peer closed before the announced length: cut short
                expected = response_headers.get("content-length", "?")
                raise ConnectionLostError(
                    f"{shown}: body cut short ({len(received)} of {expected} bytes)",
                    url=shown,
                    reason="truncated body",
                ) from None
            raise _lost(shown, exc) from None
        except httpx.TimeoutException:
            raise ConnectionLostError(
                f"{shown}: request failed: timed out", url=shown, reason="timed out"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            raise _lost(shown, exc) from None
        identity = response_headers.get("content-encoding", "identity") == "identity"
        length = response_headers.get("content-length") if identity else None
        body = read_body(
            self._source, shown, bytes(received[: self._limits.max_bytes + 1]), length, self._limits
        )
        return HttpResponse(status, response_headers, body)


def _lost(shown: str, exc: BaseException) -> ConnectionLostError:
    reason = str(exc) or type(exc).__name__
    return ConnectionLostError(f"{shown}: request failed: {reason}", url=shown, reason=reason)
