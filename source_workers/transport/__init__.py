"""Provider I/O: the only modules of source_workers that open sockets.

:mod:`.websocket` (the websockets library) and :mod:`.http` (the standard
library's HTTP client, run in a thread). Each translates its library's
exceptions into :class:`~foundation.errors.ConnectionLostError`,
:class:`~foundation.errors.RateLimitedError` or
:class:`~foundation.errors.ProviderRefusedError`, here and nowhere else.
"""

from source_workers.transport.urls import masked_url

__all__ = ["masked_url"]
