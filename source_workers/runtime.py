"""The Durable Runtime: keeps a source connected and stages what it receives.

One asyncio task runs the source's ``start(ctx)`` (one *session*: connect,
subscribe, emit). The runtime around it:

* **Reconnects** when a session ends or fails with a back-off or retry error
  (a dropped or silent socket, HTTP 5xx or 429), after a capped exponential
  delay with jitter (:class:`~foundation.backoff.Backoff`), reset once a
  connection stayed healthy. A :class:`StopError` (bad key, wiring mistake)
  ends the worker with its message.
* **Processes sequentially**: every message goes through ``parse`` and
  ``process`` of each resource in arrival order, in the event loop; records
  wait in one :class:`~source_workers.buffer.ResourceBuffer` per resource.
* **Stages, then moves on**: a buffer is staged when full or after
  ``linger_s``, with the newest checkpoint ``process`` gave, through the
  staging writer in one worker thread. Writes never overlap and keep their
  order; while one runs, new messages wait (the websocket's own buffer and
  TCP push back on the provider) and the producer's queue limits apply.
  Failed deliveries are retried with the same records and checkpoint; a record the
  schema refuses is dead-lettered with its frame and the rest is staged.
* **Quarantines bad input**: frames over the size or depth limit, not JSON,
  or that a resource's ``parse``/``process`` raises on go to the resource's
  dead-letter topic with the reason, counted; the worker goes on.
* **Cleans up on stop** (:meth:`SourceRuntime.stop`, from SIGTERM/SIGINT):
  the stream stops reading, helpers are cancelled, the socket closes, what was
  received is staged, and :meth:`run` returns within about
  ``shutdown_timeout_s``.

**Injected I/O**: the provider is reached through the transports it is handed
(:class:`~source_workers.transport.protocol.HttpTransport`,
:class:`~source_workers.transport.protocol.WebSocketTransport`; by default the
real ones), and every timer and wait follows its :class:`~foundation.clock.Clock`,
so a test drives a whole source with the in-memory transports and a manual clock.

Checkpoints are loaded by the caller (from what sinks confirmed written) and
handed to ``start`` through the context; the runtime never saves one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from foundation.backoff import Backoff
from foundation.clock import SYSTEM_CLOCK, Clock, wait_event
from foundation.config import RuntimeSettings
from foundation.errors import (
    BackoffError,
    DeadLetterError,
    IngestError,
    MalformedFrameError,
    RetryError,
    StopError,
)
from foundation.metrics import Metrics
from source_workers.authoring import Source, normalize
from source_workers.context import SourceContext
from source_workers.frames import FrameLimits, decode_frame
from source_workers.stager import Stager
from source_workers.stats import RuntimeStats
from source_workers.transport.http import HttpClient
from source_workers.transport.protocol import HttpTransport, StreamStopped, WebSocketTransport
from source_workers.transport.websocket import WebsocketsTransport
from staging.protocol import StagingSession

log = logging.getLogger(__name__)

_LETTERS_BOUND = 1_000
"""Dead letters waiting at most; processing waits while more are being sent."""


class SourceRuntime:
    def __init__(
        self,
        source: Source,
        session: StagingSession,
        *,
        settings: RuntimeSettings,
        connector_settings: Any = None,
        checkpoints: Mapping[str, Mapping[str, Any] | None] | None = None,
        metrics: Metrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        jitter: Callable[[], float] = random.random,
        on_frame: Callable[[str | bytes], None] | None = None,
        http: HttpTransport | None = None,
        websocket: WebSocketTransport | None = None,
    ) -> None:
        self.source = source
        self.on_frame = on_frame
        """Sees every websocket frame received, before it is processed (``--record``)."""
        self.settings = settings
        self.connector_settings = connector_settings
        self.checkpoints = dict(checkpoints or {})
        self.metrics = metrics or Metrics()
        self.stats = RuntimeStats()
        self.stopping_event = asyncio.Event()
        self.limits = FrameLimits(settings.max_frame_bytes, settings.max_json_depth)
        self.http: HttpTransport = http or HttpClient(
            source=source.name,
            limits=self.limits,
            timeout_s=settings.connect_timeout_s,
            user_agent="durable-ingest",
            clock=clock,
        )
        """REST requests (default: :class:`HttpClient`; tests hand in a memory one)."""
        self.websocket: WebSocketTransport = websocket or WebsocketsTransport()
        """Opens provider websockets (default: the websockets library)."""
        self.backoff = Backoff(
            initial_s=settings.backoff_initial_s,
            max_s=settings.backoff_max_s,
            reset_after_s=settings.backoff_reset_after_s,
            jitter=jitter,
        )
        self.clock = clock
        """Timers (reconnect health, linger, deadlines) and the time each message was received."""
        self.stager = Stager(
            source.name,
            [r.name for r in source.resources],
            session,
            settings=settings,
            metrics=self.metrics,
            stats=self.stats,
            stopping=self.stopping_event,
            clock=clock,
            jitter=jitter,
        )
        self._session_task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- life ---------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading, stage what was received, return from :meth:`run`. Thread-safe."""
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._begin_stop)
        else:
            self._begin_stop()

    def _begin_stop(self) -> None:
        self.stager.begin_stop()
        self.stopping_event.set()

    @property
    def source_name(self) -> str:
        return self.source.name

    def checkpoint_of(self, resource: str | None) -> Mapping[str, Any] | None:
        """The checkpoint loaded at start for ``resource`` (default: the first resource)."""
        name = resource or self.source.resources[0].name
        self.source.resource(name)  # an undeclared name is refused, naming the source
        return self.checkpoints.get(name)

    def connected(self) -> None:
        """A provider connection opened (the backoff resets once it stays up)."""
        self.backoff.connected(self.clock.monotonic())
        self.metrics.set(
            "source_connected", 1, {"source": self.source.name}, help="1 while connected"
        )

    def helper_failed(self, error: BaseException) -> None:
        """A helper task failed: end the session (and, unless it can be retried, the worker)."""
        if not isinstance(error, BackoffError | RetryError):
            self._fail(error)
        elif self._session_task is not None and not self._session_task.done():
            self._session_task.cancel()

    def _fail(self, error: BaseException) -> None:
        """End the worker with ``error``: the session, the reconnect wait, everything."""
        if self._failure is None:
            self._failure = error
        self._begin_stop()
        if self._session_task is not None and not self._session_task.done():
            self._session_task.cancel()

    async def run(self) -> RuntimeStats:
        """Sessions until stopped; raises the StopError that ended it, if one did."""
        self._loop = asyncio.get_running_loop()
        flusher = asyncio.create_task(self._flush_loop(), name=f"{self.source.name}:flusher")
        try:
            while not self.stopping_event.is_set():
                await self._one_session()
                if self._failure is not None:
                    raise self._failure
                if self.stopping_event.is_set():
                    break
                delay = self.backoff.failed(self.clock.monotonic())
                self.metrics.inc("source_reconnects_total", 1, {"source": self.source.name})
                log.info("source %s: reconnecting in %.2f s", self.source.name, delay)
                await wait_event(self.clock, self.stopping_event, delay)
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            try:
                await self.stager.flush_all()
            finally:
                self.stager.close()
                await self.http.aclose()
        return self.stats

    async def _one_session(self) -> None:
        context = SourceContext(self, self.connector_settings)
        task: asyncio.Task[None] = asyncio.ensure_future(self.source.start(context))
        self._session_task = task
        self.stats.sessions += 1
        stop_wait = asyncio.create_task(self.stopping_event.wait())
        try:
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                # Stopping: the stream ends at its next read; give start() a bounded grace.
                done, _ = await asyncio.wait({task}, timeout=self.settings.shutdown_timeout_s / 2)
                if not done:
                    log.warning(
                        "source %s: start() did not end in time; cancelling it", self.source.name
                    )
                    task.cancel()
            try:
                await task
                if not self.stopping_event.is_set():
                    log.warning("source %s: the session ended; reconnecting", self.source.name)
            except (StreamStopped, asyncio.CancelledError):
                if self._failure is None and not self.stopping_event.is_set():
                    log.warning("source %s: a helper ended the session", self.source.name)
            except (BackoffError, RetryError) as exc:
                log.warning("source %s: %s", self.source.name, exc)
            except IngestError:
                raise
        finally:
            stop_wait.cancel()
            await context.cancel_helpers()
            self._session_task = None
            self.metrics.set("source_connected", 0, {"source": self.source.name})

    # --- processing ---------------------------------------------------------

    async def dispatch(self, raw: Any, resource: str | None = None) -> None:
        """One message through parse and process of its resources; may stage."""
        if self.stager.letters_waiting >= _LETTERS_BOUND:
            await self.stager.send_letters()  # backpressure: dead letters do not pile up
        self.stats.frames += 1
        received_us = self.clock.wall_us()
        now = self.clock.monotonic()
        if isinstance(raw, str | bytes | bytearray):
            frame: str | bytes = raw if isinstance(raw, str | bytes) else bytes(raw)
            try:
                value = decode_frame(self.source.name, frame, self.limits)
            except MalformedFrameError as exc:
                self.stager.dead_letter(resource or self.source.dead_letters, frame, exc)
                return
        else:
            value = raw
            frame = _as_frame(raw)
        control = self.source.control
        if control is not None and resource is None:
            try:
                if control(value):
                    return
            except (StopError, BackoffError, RetryError):
                raise
            except Exception as exc:  # noqa: BLE001 - a malformed protocol message
                self.stager.dead_letter(self.source.dead_letters, frame, exc, stage="control")
                return
        targets = (
            (self.source.resource(resource, raw),)
            if resource is not None
            else self.source.resources
        )
        claimed = False
        for target in targets:
            name = target.name
            try:
                payload = target.parse(value)
                if payload is None:
                    continue
                claimed = True
                result = target.process(payload, received_us)
            except (StopError, BackoffError, RetryError):
                raise
            except (DeadLetterError, Exception) as exc:  # noqa: BLE001 - bad input, not a bug
                self.stager.dead_letter(name, frame, exc, stage="parse/process")
                claimed = True
                continue
            records, checkpoint = normalize(self.source.name, name, result)
            if records:
                self.backoff.delivered()
            await self.stager.add(name, records, frame, checkpoint, now)
        if not claimed:
            if resource is not None:
                self.stager.dead_letter(
                    resource, frame, ValueError(f"resource {resource} did not recognise it")
                )
            else:
                self.stats.ignored += 1

    async def _flush_loop(self) -> None:
        interval = max(0.01, self.settings.linger_s / 2)
        try:
            while True:
                await self.clock.sleep(interval)
                await self.stager.flush_due()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - staging broke: end the session and the worker
            self._fail(exc)


_encode_json = msgspec.json.Encoder(enc_hook=str).encode


def _as_frame(value: Any) -> str | bytes:
    """A decoded value (an item of a REST page) as the frame its dead letter would keep:
    compact UTF-8 JSON (anything JSON has no form for as its text), else its repr."""
    try:
        return _encode_json(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return repr(value)
