"""Write-then-move-on: what a source received, staged in order, retried, quarantined.

One :class:`Stager` per source worker. It keeps a
:class:`~source_workers.buffer.ResourceBuffer` per resource and the dead
letters waiting to be sent, and stages them through the staging session in
**one worker thread**: writes never overlap and keep their order, so a
write's checkpoint is only ever staged after every earlier write was
acknowledged. A write is retried with the same records and checkpoint until it
is acknowledged (``DeliveryUnknownError`` included: the event ids are
deterministic, so a repeat is deduplicated downstream); a record the schema
refuses is dead-lettered with its frame and the rest is staged. At shutdown,
retries end after about half of ``shutdown_timeout_s``: unstaged records' checkpoint
never moved, so a restart fetches them again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from foundation.backoff import Backoff
from foundation.clock import Clock, wait_event
from foundation.config import RuntimeSettings
from foundation.errors import BackoffError, RecordTooLargeError, RetryError, SchemaMismatchError
from foundation.log_throttle import LogThrottle, held_back
from foundation.metrics import Metrics
from source_workers.authoring import Record
from source_workers.buffer import LazyCheckpoint, Pending, ResourceBuffer
from source_workers.frames import frame_bytes
from source_workers.stats import RuntimeStats
from staging.deadletters import DeadLetter
from staging.protocol import StagingSession

log = logging.getLogger(__name__)

_MAX_LETTER_BYTES = 256 * 1024
"""A dead-lettered frame is cut to this many bytes (the reason says so)."""


class Stager:
    def __init__(
        self,
        source: str,
        resources: Sequence[str],
        session: StagingSession,
        *,
        settings: RuntimeSettings,
        metrics: Metrics,
        stats: RuntimeStats,
        stopping: asyncio.Event,
        clock: Clock,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._source = source
        self._session = session
        self.settings = settings
        self.metrics = metrics
        self.stats = stats
        self._stopping = stopping
        self._clock = clock
        self._jitter = jitter
        self._writers = {name: session.writer(name) for name in resources}
        self._buffers = {
            name: ResourceBuffer(settings.batch_records, settings.linger_s) for name in resources
        }
        self._letters: list[DeadLetter] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"stage-{source}")
        self._lock = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None
        self._background: asyncio.Future[None] | None = None
        self.broken: BaseException | None = None
        """What ended staging: a write that failed for good, or a give-up at shutdown."""
        self._stop_deadline: float | None = None
        self._labels = {name: {"source": source, "resource": name} for name in resources}
        self._log_throttle = LogThrottle(clock=clock)
        """One warning per kind of dead letter a minute; the metric counts every one."""
        for labels in self._labels.values():  # every series from the start, at 0
            self.metrics.inc("source_records_staged_total", 0, labels, help="Records staged")
            self.metrics.inc(
                "source_dead_letters_total",
                0,
                labels,
                help="Frames and records quarantined to dead-letter topics",
            )

    async def add(
        self,
        name: str,
        records: Sequence[Record],
        frame: str | bytes,
        checkpoint: LazyCheckpoint | None,
        now: float,
    ) -> None:
        """Buffer a message's records; stage the buffer if it is due.

        The write runs in the background while more messages are processed;
        once a second batch is full behind a write still under way, this
        waits for that write (backpressure), then writes what waits in the
        background too, so processing goes on while it is acknowledged. A
        write that failed for good (in the background or in the flusher) is
        raised here, on the next message.
        """
        self.check()
        buffer = self._buffers[name]
        buffer.add(records, frame, checkpoint, now)
        if not buffer.due(now):
            return
        if self._background is not None and not self._background.done():
            if len(buffer) < 2 * self.settings.batch_records:
                return
            await asyncio.shield(self._background)
            self.check()
        self._background = asyncio.ensure_future(self._flush(name))
        self._background.add_done_callback(_retrieve)

    def check(self) -> None:
        """Raise the error that ended staging, if one did (not a shutdown give-up)."""
        if self.broken is not None and not isinstance(self.broken, GaveUp):
            raise self.broken

    def begin_stop(self) -> None:
        """Stopping began: writes still failing give up half the shutdown budget from now."""
        if self._stop_deadline is None:
            self._stop_deadline = self._clock.monotonic() + self.settings.shutdown_timeout_s / 2

    @property
    def letters_waiting(self) -> int:
        return len(self._letters)

    async def flush_due(self) -> None:
        now = self._clock.monotonic()
        for name, buffer in self._buffers.items():
            if buffer.due(now):
                await self._flush(name)
        if self._letters:
            await self.send_letters()
        self.check()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def dead_letter(
        self, resource: str, frame: str | bytes, error: BaseException, stage: str = "frame"
    ) -> None:
        data = frame_bytes(frame)
        reason = f"{stage}: {type(error).__name__}: {error}"
        if len(data) > _MAX_LETTER_BYTES:
            reason += f" (frame of {len(data)} bytes cut to {_MAX_LETTER_BYTES})"
            data = data[:_MAX_LETTER_BYTES]
        self._letters.append(
            DeadLetter(
                resource=resource,
                key=None,
                value=data,
                headers=(),
                reason=reason,
                code=type(error).__name__,
                origin=f"source:{self._source}",
            )
        )
        self.stats.dead_letters += 1
        self.metrics.inc(
            "source_dead_letters_total",
            1,
            self._labels[resource],
            help="Frames and records quarantined to dead-letter topics",
        )
        held = self._log_throttle.allow((resource, stage, type(error).__name__))
        if held is not None:
            log.warning(
                "source %s, resource %s: dead-lettered a frame: %s%s",
                self._source,
                resource,
                reason[:300],
                held_back(held),
            )

    async def flush_all(self) -> None:
        """Stage everything received (at stop); then raise what broke staging, if anything."""
        self.begin_stop()
        pending = [f for f in (self._background, self._writing) if f is not None and not f.done()]
        await asyncio.gather(*pending, return_exceptions=True)
        for name in self._buffers:
            await self._flush(name)
        if self._letters:
            await self.send_letters()
        left = sum(len(b) for b in self._buffers.values())
        if left:
            log.error(
                "source %s: %d received records were not staged (%s); no checkpoint covers "
                "them, so a restart fetches them again from the provider where it can",
                self._source,
                left,
                self.broken,
            )
        self.check()

    async def _flush(self, name: str) -> None:
        async with self._lock:
            if self.broken is not None:
                return  # nothing more is staged: no later checkpoint may cover what failed
            # Dead letters first: the write below may move the checkpoint past their frames.
            await self._send_letters_locked()
            if self.broken is not None:
                return
            pending = self._buffers[name].take()
            if not pending.records:
                return
            self._writing = asyncio.ensure_future(self._write(name, pending))
            self._writing.add_done_callback(_retrieve)
            await asyncio.shield(self._writing)

    async def _write(self, name: str, pending: Pending) -> None:
        """Stage one batch: retried until acknowledged; refused records dead-lettered.

        Any other failure, and a give-up at shutdown, breaks staging: no later
        write of this process is staged, so no later checkpoint can cover these records.
        """
        writer = self._writers[name]
        loop = asyncio.get_running_loop()
        backoff = self._backoff()
        while pending.records:
            records, checkpoint = pending.records, pending.checkpoint
            try:
                await loop.run_in_executor(
                    self._executor,
                    functools.partial(writer.write_batch, records, checkpoint=checkpoint),
                )
            except (SchemaMismatchError, RecordTooLargeError) as exc:
                self.dead_letter(name, pending.frames[exc.record_index], exc, stage="stage")
                pending = pending.without(exc.record_index)
                continue
            except (RetryError, BackoffError) as exc:
                if (
                    self._stop_deadline is not None
                    and self._clock.monotonic() >= self._stop_deadline
                ):
                    self.broken = GaveUp(f"staging still failing at shutdown: {exc}")
                    self._buffers[name].put_back(pending)
                    return
                delay = backoff.next_delay()
                log.warning(
                    "source %s, resource %s: staging failed (%s); retrying in %.1f s",
                    self._source,
                    name,
                    exc,
                    delay,
                )
                await self._pause(delay)
                continue
            except BaseException as exc:
                self.broken = exc
                self._buffers[name].put_back(pending)
                log.error(
                    "source %s, resource %s: staging failed for good (%s); nothing more is "
                    "staged by this process",
                    self._source,
                    name,
                    exc,
                )
                raise
            self.stats.records_staged += len(records)
            self.stats.writes += 1
            labels = self._labels[name]
            self.metrics.inc(
                "source_records_staged_total", len(records), labels, help="Records staged"
            )
            self.metrics.inc("source_writes_total", 1, labels, help="Acknowledged writes")
            self.metrics.set("source_last_staged_unixtime", self._clock.wall_us() / 1e6, labels)
            return
        if pending.checkpoint is not None and self._buffers[name].checkpoint is None:
            self._buffers[name].checkpoint = pending.checkpoint  # nothing left to carry it yet

    async def send_letters(self) -> None:
        """Stage the waiting dead letters; on failure they wait again (at shutdown: logged)."""
        async with self._lock:
            await self._send_letters_locked()

    def _backoff(self) -> Backoff:
        return Backoff(
            initial_s=self.settings.backoff_initial_s,
            max_s=self.settings.backoff_max_s,
            jitter=self._jitter,
        )

    async def _pause(self, seconds: float) -> None:
        """A retry delay: cut at the stop deadline, and woken by the stop."""
        if self._stop_deadline is not None:
            await self._clock.sleep(
                max(0.0, min(seconds, self._stop_deadline - self._clock.monotonic()))
            )
            return
        await wait_event(self._clock, self._stopping, seconds)

    async def _send_letters_locked(self) -> None:
        letters, self._letters = self._letters, []
        if not letters:
            return
        loop = asyncio.get_running_loop()
        sender = self._session.dead_letters()
        backoff = self._backoff()
        try:
            while True:
                try:
                    await loop.run_in_executor(self._executor, sender.send, letters)
                    return
                except (RetryError, BackoffError) as exc:
                    if (
                        self._stop_deadline is not None
                        and self._clock.monotonic() >= self._stop_deadline
                    ):
                        self.broken = self.broken or GaveUp(f"dead letters not staged: {exc}")
                        log.error(
                            "source %s: %d dead letters not staged at shutdown: %s",
                            self._source,
                            len(letters),
                            exc,
                        )
                        return
                    await self._pause(backoff.next_delay())
        except BaseException:
            self._letters[:0] = letters  # kept for the next attempt
            raise


class GaveUp(Exception):
    """Staging was given up at shutdown (the dependency stayed down)."""


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a background write's exception as seen: :meth:`Stager.check` raises it."""
    if not future.cancelled():
        future.exception()
