"""Provider I/O: the only modules of source_workers that open sockets.

:mod:`.protocol` declares the two transports a source talks through,
:class:`HttpTransport` and :class:`WebSocketTransport`, and the errors they
raise. :mod:`.websocket` (the websockets library) and :mod:`.http` (the
standard library's HTTP client, run in a thread) are the real ones; each
translates its library's exceptions into
:class:`~foundation.errors.ConnectionLostError`,
:class:`~foundation.errors.RateLimitedError` or
:class:`~foundation.errors.ProviderRefusedError`, here and nowhere else.
:mod:`.answers` says what an HTTP status or body means, for both the real and
the in-memory transports.
"""

from source_workers.transport.protocol import (
    HttpResponse,
    HttpTransport,
    Stream,
    StreamOptions,
    StreamStopped,
    WebSocketTransport,
)
from source_workers.transport.urls import masked_url

__all__ = [
    "HttpResponse",
    "HttpTransport",
    "Stream",
    "StreamOptions",
    "StreamStopped",
    "WebSocketTransport",
    "masked_url",
]
