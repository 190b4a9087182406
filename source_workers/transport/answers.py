"""What an HTTP answer means, pure: the same for the real client and the in-memory one.

:func:`check_url` refuses what is not http(s); :func:`status_error` turns a
status other than 2xx into the error the caller must act on; :func:`read_body`
checks a body's length and size and decodes it within the frame limits.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Any

from foundation.errors import (
    ConnectionLostError,
    IngestError,
    ProviderRefusedError,
    RateLimitedError,
)
from source_workers.frames import FrameLimits, decode_frame, malformed

MAX_RETRY_AFTER_S = 300.0
"""A provider's ``Retry-After`` is followed up to this long."""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date, counted from ``now``, Unix
    seconds; capped at :data:`MAX_RETRY_AFTER_S`); None if absent or unreadable."""
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


def check_url(source: str, url: str, shown: str) -> None:
    """Only http(s) URLs are requested."""
    if not url.lower().startswith(("http://", "https://")):
        raise ProviderRefusedError(
            f"source {source}: {shown} is not an http(s) URL", source=source, reason="bad url"
        )


def status_error(
    source: str, shown: str, status: int, headers: Mapping[str, str], now: float
) -> IngestError | None:
    """The error an answer with ``status`` is (None for 2xx); ``headers`` lower-case,
    ``now`` Unix seconds (for a ``Retry-After`` date)."""
    if 200 <= status < 300:
        return None
    if status in (429, 503):
        return RateLimitedError(
            f"{shown}: HTTP {status} (rate limited)",
            url=shown,
            status=status,
            retry_after_s=retry_after_seconds(headers.get("retry-after"), now),
        )
    if 300 <= status < 400:
        return ProviderRefusedError(
            f"source {source}: {shown} redirected (HTTP {status}); redirects are "
            "not followed, so credentials never go to another host: set the final URL",
            source=source,
            reason=f"HTTP {status}",
        )
    if status >= 500 or status == 408:
        return ConnectionLostError(f"{shown}: HTTP {status}", url=shown, reason=f"HTTP {status}")
    return ProviderRefusedError(
        f"source {source}: {shown} answered HTTP {status}",
        source=source,
        reason=f"HTTP {status}",
    )


def read_body(
    source: str, shown: str, body: bytes, content_length: str | None, limits: FrameLimits
) -> Any:
    """The decoded body: ConnectionLostError if shorter than its ``Content-Length``,
    MalformedFrameError if over ``limits.max_bytes`` (``body`` read up to one byte more)
    or not acceptable JSON."""
    expected = content_length or ""
    if expected.isdecimal() and len(body) < int(expected) <= limits.max_bytes:
        raise ConnectionLostError(
            f"{shown}: body cut short ({len(body)} of {expected} bytes)",
            url=shown,
            reason="truncated body",
        )
    if len(body) > limits.max_bytes:
        raise malformed(source, body[:4096], f"HTTP body over {limits.max_bytes} bytes")
    return decode_frame(source, body, limits)


def handshake_error(source: str, shown: str, status: int) -> IngestError:
    """A websocket handshake answered with ``status`` instead of 101: a 4xx other than 408
    and 429 is a refusal (stop); anything else is retried."""
    if 400 <= status < 500 and status not in (408, 429):
        return ProviderRefusedError(
            f"source {source}: {shown} refused the websocket with HTTP {status}",
            source=source,
            reason=f"HTTP {status}",
        )
    return ConnectionLostError(
        f"websocket {shown}: HTTP {status}", url=shown, reason=f"HTTP {status}"
    )
