"""Write-then-move-on: what a source received, staged in order, retried, quarantined.

One :class:`Stager` per source worker. It keeps a
:class:`~source_workers.buffer.ResourceBuffer` per resource and the dead
letters waiting to be sent, and stages them through the staging session in
**one worker thread**: writes never overlap and keep their order, so a
write's checkpoint is only ever staged after every earlier write was
acknowledged. A write is retried with the same rows and checkpoint until it
is acknowledged (``DeliveryUnknownError`` included: the event ids are
deterministic, so a repeat is deduplicated downstream); a row the schema
refuses is dead-lettered with its frame and the rest is staged. At shutdown,
retries end after about half of ``shutdown_timeout_s``: unstaged rows' checkpoint
never moved, so a restart fetches them again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from durable_ingest.config import RuntimeSettings
from durable_ingest.errors import BackoffError, RecordTooLargeError, RetryError, SchemaMismatchError
from durable_ingest.metrics import Metrics
from source_workers.buffer import LazyCheckpoint, Pending, ResourceBuffer
from source_workers.frames import frame_bytes
from staging.deadletters import DeadLetter
from staging.protocol import StagingSession

if TYPE_CHECKING:
    from source_workers.runtime import RuntimeStats

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
        clock: Callable[[], float],
    ) -> None:
        self._source = source
        self._session = session
        self.settings = settings
        self.metrics = metrics
        self.stats = stats
        self._stopping = stopping
        self._clock = clock
        self._writers = {name: session.writer(name) for name in resources}
        self._buffers = {
            name: ResourceBuffer(settings.batch_rows, settings.linger_s) for name in resources
        }
        self._letters: list[DeadLetter] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"stage-{source}")
        self._lock = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None
        self._background: asyncio.Future[None] | None = None
        self._labels = {name: {"source": source, "resource": name} for name in resources}

    async def add(
        self,
        name: str,
        records: Sequence[object],
        frame: str | bytes,
        checkpoint: LazyCheckpoint | None,
        now: float,
    ) -> None:
        """Buffer a message's records; stage the buffer if it is due.

        The write runs in the background while more messages are processed;
        once a second batch is full behind a write still under way, this
        waits for it (backpressure). A failure of a background write is raised
        here, on the next message.
        """
        background = self._background
        if background is not None and background.done():
            self._background = None
            background.result()  # raises what the write raised (a StopError)
        buffer = self._buffers[name]
        buffer.add(records, frame, checkpoint, now)
        if not buffer.due(now):
            return
        if self._background is None:
            self._background = asyncio.ensure_future(self._flush(name))
        elif len(buffer) >= 2 * self.settings.batch_rows:
            await asyncio.shield(self._background)
            self._background = None
            await self._flush(name)

    async def flush_due(self) -> None:
        now = self._clock()
        for name, buffer in self._buffers.items():
            if buffer.due(now):
                await self._flush(name)
        if self._letters:
            await self._send_letters()

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
        log.warning(
            "source %s, resource %s: dead-lettered a frame: %s",
            self._source,
            resource,
            reason[:300],
        )

    async def flush_all(self) -> None:
        if self._background is not None:
            background, self._background = self._background, None
            await background
        if self._writing is not None and not self._writing.done():
            await asyncio.gather(self._writing, return_exceptions=True)
        for name in self._buffers:
            await self._flush(name, final=True)
        if self._letters:
            await self._send_letters(final=True)

    async def _flush(self, name: str, final: bool = False) -> None:
        async with self._lock:
            if self._writing is not None and not self._writing.done():
                await asyncio.shield(self._writing)
            pending = self._buffers[name].take()
            if not pending.rows:
                return
            self._writing = asyncio.ensure_future(self._write(name, pending, final))
            await asyncio.shield(self._writing)

    async def _write(self, name: str, pending: Pending, final: bool) -> None:
        """Stage one batch: retried until acknowledged; refused rows dead-lettered."""
        writer = self._writers[name]
        loop = asyncio.get_running_loop()
        delay = self.settings.backoff_initial_s
        deadline = self._clock() + self.settings.shutdown_timeout_s / 2
        while pending.rows:
            rows, checkpoint = pending.rows, pending.checkpoint
            try:
                await loop.run_in_executor(
                    self._executor,
                    functools.partial(writer.write_batch, rows, checkpoint=checkpoint),
                )
            except (SchemaMismatchError, RecordTooLargeError) as exc:
                self.dead_letter(name, pending.frames[exc.row_index], exc, stage="stage")
                pending = pending.without(exc.row_index)
                continue
            except (RetryError, BackoffError) as exc:
                if (final or self._stopping.is_set()) and self._clock() > deadline:
                    log.error(
                        "source %s, resource %s: giving up on %d unstaged rows at shutdown "
                        "(%s); their checkpoint did not move, so a restart fetches them again",
                        self._source,
                        name,
                        len(rows),
                        exc,
                    )
                    return
                log.warning(
                    "source %s, resource %s: staging failed (%s); retrying in %.1f s",
                    self._source,
                    name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_max_s)
                continue
            self.stats.records_staged += len(rows)
            self.stats.writes += 1
            labels = self._labels[name]
            self.metrics.inc(
                "source_records_staged_total", len(rows), labels, help="Records staged"
            )
            self.metrics.inc("source_writes_total", 1, labels, help="Acknowledged writes")
            self.metrics.set("source_last_staged_unixtime", time.time(), labels)
            return
        if pending.checkpoint is not None and self._buffers[name].checkpoint is None:
            self._buffers[name].checkpoint = pending.checkpoint  # nothing left to carry it yet

    async def _send_letters(self, final: bool = False) -> None:
        async with self._lock:
            letters, self._letters = self._letters, []
            if not letters:
                return
            loop = asyncio.get_running_loop()
            sender = self._session.dead_letters()
            delay = self.settings.backoff_initial_s
            deadline = self._clock() + self.settings.shutdown_timeout_s / 2
            while True:
                try:
                    await loop.run_in_executor(self._executor, sender.send, letters)
                    return
                except (RetryError, BackoffError) as exc:
                    if (final or self._stopping.is_set()) and self._clock() > deadline:
                        log.error(
                            "source %s: %d dead letters not staged at shutdown: %s",
                            self._source,
                            len(letters),
                            exc,
                        )
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.settings.backoff_max_s)
