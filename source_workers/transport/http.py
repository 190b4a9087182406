"""Provider HTTP (REST) requests: JSON bodies within limits, errors translated.

Built on the standard library's client, run in a worker thread so the
runtime's event loop keeps serving the websocket. :meth:`HttpClient.get_json`
returns the decoded body and the response headers, or raises:

* :class:`RateLimitedError` for 429 and 503 (with ``Retry-After`` when given);
* :class:`ConnectionLostError` for other 5xx, timeouts and refused connections;
* :class:`ProviderRefusedError` for other 4xx (a wrong product, a bad key);
* :class:`MalformedFrameError` for a body over the size limit or not JSON.

The caller decides how long to keep retrying; this module never sleeps.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from durable_ingest.errors import ConnectionLostError, ProviderRefusedError, RateLimitedError
from source_workers.frames import FrameLimits, decode_frame, malformed
from source_workers.transport.urls import masked_url


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    """Lower-case header names."""
    body: Any


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


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
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
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
            if status >= 500 or status == 408:
                raise ConnectionLostError(
                    f"{shown}: HTTP {status}", url=shown, reason=f"HTTP {status}"
                ) from None
            raise ProviderRefusedError(
                f"source {self._source}: {shown} answered HTTP {status}",
                source=self._source,
                reason=f"HTTP {status}",
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConnectionLostError(
                f"{shown}: request failed: {reason}", url=shown, reason=str(reason)
            ) from None
        if len(body) > self._limits.max_bytes:
            raise malformed(
                self._source, body[:4096], f"HTTP body over {self._limits.max_bytes} bytes"
            )
        return HttpResponse(
            status, response_headers, decode_frame(self._source, body, self._limits)
        )
