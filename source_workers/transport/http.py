"""Provider HTTP (REST) requests: JSON bodies within limits, errors translated.

Built on the standard library's client, run in a worker thread so the
runtime's event loop keeps serving the websocket. :meth:`HttpClient.get_json`
returns the decoded body and the response headers, or raises:

* :class:`RateLimitedError` for 429 and 503 (with ``Retry-After`` when given);
* :class:`ConnectionLostError` for other 5xx, timeouts, refused connections and
  broken responses (truncated bodies, bad status lines);
* :class:`ProviderRefusedError` for other 4xx (a wrong product, a bad key) and
  for redirects, which are never followed (the key headers would go along);
* :class:`MalformedFrameError` for a body over the size limit or not JSON.

The caller decides how long to keep retrying; this module never sleeps.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from foundation.errors import ConnectionLostError, ProviderRefusedError, RateLimitedError
from source_workers.frames import FrameLimits, decode_frame, malformed
from source_workers.transport.urls import masked_url


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    """Lower-case header names."""
    body: Any


MAX_RETRY_AFTER_S = 300.0
"""A provider's ``Retry-After`` is followed up to this long."""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date, capped at
    :data:`MAX_RETRY_AFTER_S`); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        if value.isascii() and value.isdecimal():
            return min(float(value), MAX_RETRY_AFTER_S)
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would send the key headers to any host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


class HttpClient:
    def __init__(
        self, *, source: str, limits: FrameLimits, timeout_s: float, user_agent: str
    ) -> None:
        self._source = source
        self._limits = limits
        self._timeout_s = timeout_s
        self._user_agent = user_agent

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
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked below
            url, headers={"User-Agent": self._user_agent, "Accept": "application/json", **headers}
        )
        if request.type not in ("http", "https"):
            raise ProviderRefusedError(
                f"source {self._source}: {shown} is not an http(s) URL",
                source=self._source,
                reason="bad url",
            )
        try:
            with _opener.open(request, timeout=self._timeout_s) as response:
                status = response.status
                response_headers = {k.lower(): v for k, v in response.headers.items()}
                body = response.read(self._limits.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = retry_after_seconds(exc.headers.get("Retry-After"), time.time())
            exc.close()
            if status in (429, 503):
                raise RateLimitedError(
                    f"{shown}: HTTP {status} (rate limited)",
                    url=shown,
                    status=status,
                    retry_after_s=retry_after,
                ) from None
            if 300 <= status < 400:
                raise ProviderRefusedError(
                    f"source {self._source}: {shown} redirected (HTTP {status}); redirects are "
                    "not followed, so credentials never go to another host: set the final URL",
                    source=self._source,
                    reason=f"HTTP {status}",
                ) from None
            if status >= 500 or status == 408:
                raise ConnectionLostError(
                    f"{shown}: HTTP {status}", url=shown, reason=f"HTTP {status}"
                ) from None
            raise ProviderRefusedError(
                f"source {self._source}: {shown} answered HTTP {status}",
                source=self._source,
                reason=f"HTTP {status}",
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConnectionLostError(
                f"{shown}: request failed: {reason}", url=shown, reason=str(reason)
            ) from None
        expected = response_headers.get("content-length", "")
        if expected.isdecimal() and len(body) < int(expected) <= self._limits.max_bytes:
            raise ConnectionLostError(
                f"{shown}: body cut short ({len(body)} of {expected} bytes)",
                url=shown,
                reason="truncated body",
            )
        if len(body) > self._limits.max_bytes:
            raise malformed(
                self._source, body[:4096], f"HTTP body over {self._limits.max_bytes} bytes"
            )
        return HttpResponse(
            status, response_headers, decode_frame(self._source, body, self._limits)
        )
