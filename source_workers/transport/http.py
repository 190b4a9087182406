"""Provider HTTP (REST) requests: JSON bodies within limits, errors translated.

:class:`HttpClient` is the real :class:`~source_workers.transport.protocol.HttpTransport`.
Built on the standard library's client, run in a worker thread so the
runtime's event loop keeps serving the websocket. :meth:`HttpClient.get_json`
returns the decoded body and the response headers, or raises:

* :class:`RateLimitedError` for 429 and 503 (with ``Retry-After`` when given);
* :class:`ConnectionLostError` for other 5xx, timeouts, refused connections and
  broken responses (truncated bodies, bad status lines);
* :class:`ProviderRefusedError` for other 4xx (a wrong product, a bad key) and
  for redirects, which are never followed (the key headers would go along);
* :class:`MalformedFrameError` for a body over the size limit or not JSON.

What a status or a body means is decided in :mod:`.answers`, shared with the
in-memory transport. The caller decides how long to keep retrying; this module
never sleeps.
"""

from __future__ import annotations

import asyncio
import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would send the key headers to any host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


class HttpClient:
    """The real HTTP transport: urllib in a worker thread, one request at a time each."""

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

    async def get_json(
        self,
        url: str,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        full = url + ("?" + urlencode(params) if params else "")
        return await asyncio.to_thread(self._get, full, dict(headers or {}))

    def _get(self, url: str, headers: dict[str, str]) -> HttpResponse:
        shown = masked_url(url)
        check_url(self._source, url, shown)
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, headers={"User-Agent": self._user_agent, "Accept": "application/json", **headers}
        )
        try:
            with _opener.open(request, timeout=self._timeout_s) as response:
                status = response.status
                response_headers = {k.lower(): v for k, v in response.headers.items()}
                body = response.read(self._limits.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            error_headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
            exc.close()
            error = status_error(
                self._source, shown, exc.code, error_headers, self._clock.wall_us() / 1e6
            )
            if error is None:  # a 2xx urllib raised on: not expected, but not a crash
                error = ConnectionLostError(
                    f"{shown}: HTTP {exc.code}", url=shown, reason=f"HTTP {exc.code}"
                )
            raise error from None
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConnectionLostError(
                f"{shown}: request failed: {reason}", url=shown, reason=str(reason)
            ) from None
        error = status_error(self._source, shown, status, response_headers, 0.0)
        if error is not None:  # a 1xx or 3xx the opener handed back
            raise error
        body_value = read_body(
            self._source, shown, body, response_headers.get("content-length"), self._limits
        )
        return HttpResponse(status, response_headers, body_value)
