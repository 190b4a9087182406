"""What a source's ``start(ctx)`` is handed: the one door to the runtime.

``start`` uses it to read the checkpoints loaded at start-up, open the
provider's websocket (limits and idle timeout applied), make REST requests,
emit raw messages, run helper tasks that end with the connection, and wait
without missing a stop. It never sees the staging layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from foundation.clock import Clock, wait_event
from foundation.config import RuntimeSettings
from foundation.metrics import Metrics
from source_workers.transport.protocol import (
    HttpResponse,
    HttpTransport,
    Stream,
    StreamOptions,
    WebSocketTransport,
)


class Runtime(Protocol):
    """What a context needs of the Durable Runtime (:class:`~source_workers.runtime.
    SourceRuntime`): the seam between what connectors see and what runs them."""

    @property
    def source_name(self) -> str: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def settings(self) -> RuntimeSettings: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def http(self) -> HttpTransport: ...
    @property
    def websocket(self) -> WebSocketTransport: ...
    @property
    def stopping_event(self) -> asyncio.Event: ...
    @property
    def on_frame(self) -> Callable[[str | bytes], None] | None: ...

    def checkpoint_of(self, resource: str | None) -> Mapping[str, Any] | None:
        """The loaded checkpoint of ``resource`` (default: the first); refuses a name the
        source does not declare."""

    async def dispatch(self, raw: Any, resource: str | None = None) -> None: ...
    def connected(self) -> None: ...
    def helper_failed(self, error: BaseException) -> None: ...


class SourceContext:
    """What a Source's ``start`` gets: its settings, checkpoints, the provider transports
    (``connect``, ``http``), ``emit_raw`` into the resources, helpers and sleeping."""

    def __init__(self, runtime: Runtime, settings: Any) -> None:
        self._runtime = runtime
        self.settings = settings
        """The connector's own settings (e.g. ``CoinbaseSettings``)."""
        self.source = runtime.source_name
        """The configured source name (a connector may run as several sources)."""
        self.log = logging.getLogger(f"source_workers.{self.source}")
        self.clock: Clock = runtime.clock
        """The runtime's clock: a helper's timers follow it (a manual clock in tests)."""
        self.metrics: Metrics = runtime.metrics
        self.http = SessionHttp(runtime.http, self._http_answered)
        """REST requests (``get_json``); an HTTP source's first good answer of a session
        counts as its connection (``source_connected``, and the backoff's reset)."""
        self._connected = False
        self._tasks: set[asyncio.Task[None]] = set()

    def checkpoint(self, resource: str | None = None) -> dict[str, Any] | None:
        """The checkpoint a sink confirmed written for ``resource`` (default: the first)."""
        value = self._runtime.checkpoint_of(resource)
        return dict(value) if value is not None else None

    async def emit_raw(self, raw: str | bytes | Any, resource: str | None = None) -> None:
        """Hand one provider message to the resources (or to the one named).

        ``raw`` is a frame (text or bytes, decoded here within the limits) or a
        value already decoded (e.g. one item of a REST response). Returns once
        it is processed; may wait while the runtime stages (backpressure).
        """
        await self._runtime.dispatch(raw, resource)

    async def connect(self, url: str, headers: Mapping[str, str] | None = None) -> Stream:
        """Open the provider websocket (through the runtime's websocket transport); iterate
        it for frames until it drops or we stop."""
        settings = self._runtime.settings
        options = StreamOptions(
            source=self.source,
            max_frame_bytes=settings.max_frame_bytes,
            connect_timeout_s=settings.connect_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            stop=self._runtime.stopping_event,
            clock=self.clock,
            on_frame=self._runtime.on_frame,
            compression=settings.websocket_compression == "deflate",
        )
        stream = await self._runtime.websocket.connect(
            url, dict(headers) if headers else None, options
        )
        self._connected = True
        self._runtime.connected()
        return stream

    def _http_answered(self) -> None:
        if not self._connected:  # a websocket source's REST calls change nothing
            self._connected = True
            self._runtime.connected()

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a helper (a backfill, a heartbeat) until it ends or the session does.

        An exception in a helper ends the session like one in ``start`` itself.
        """
        task = asyncio.create_task(coroutine, name=f"{self.source}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._runtime.helper_failed(task.exception())  # type: ignore[arg-type]

    async def cancel_helpers(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def stopping(self) -> bool:
        """True once the runtime began to stop: end loops, stage nothing new."""
        return self._runtime.stopping_event.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` of the runtime's clock; returns False at once if the runtime is
        stopping."""
        return not await wait_event(self.clock, self._runtime.stopping_event, seconds)


class SessionHttp:
    """A session's view of the runtime's :class:`HttpTransport`: the same requests, and a
    call to ``answered`` after each one that got an answer."""

    def __init__(self, client: HttpTransport, answered: Callable[[], None]) -> None:
        self._client = client
        self._answered = answered

    async def get_json(
        self,
        url: str,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        response = await self._client.get_json(url, params, headers)
        self._answered()
        return response
