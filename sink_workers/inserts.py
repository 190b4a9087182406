"""One insert group into its target, with what the sink promises around it.

A group (:class:`~sink_workers.batching.InsertBatch`: one partition, one writer
schema, one deduplication token) is inserted by :class:`GroupInserter`:

* a transient error (:class:`BackoffError`, :class:`RetryError`) is retried
  with the same records and token, on the one backoff schedule, within the
  batch's budget (:class:`RetryPolicy`); between tries the reader waits in the
  group, and a partition revoked meanwhile is left to its new owner;
* a refusal (:class:`DeadLetterError`) splits the group in halves until the
  refused records are isolated, each returned as a :class:`DeadLetter` with
  its staged bytes unchanged and the warehouse's reason;
* each insert that succeeds is counted (rows, latency, freshness).

The sink worker (:mod:`sink_workers.worker`) decides when groups are written
and commits after them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from foundation.backoff import Backoff
from foundation.clock import Clock
from foundation.errors import (
    BackoffError,
    CorruptRecordError,
    DeadLetterError,
    RetryError,
    StopError,
)
from foundation.log_throttle import LogThrottle, held_back
from foundation.metrics import Metrics
from sink_workers.batching import InsertBatch
from sink_workers.targets import Target
from staging.deadletters import DeadLetter
from staging.offsets import Partition
from staging.protocol import RecordReader
from staging.resource import StagedResource
from staging.times import to_micros

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retries of transient warehouse errors: the one :class:`~foundation.backoff.Backoff`
    schedule, within a budget per batch."""

    initial_s: float = 0.5
    max_s: float = 10.0
    give_up_after_s: float = 120.0
    """Budget per batch. The reader keeps polling (paused) while the worker waits."""
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def delays(self) -> Callable[[], float]:
        """A fresh series of delays (one per batch)."""
        return Backoff(initial_s=self.initial_s, max_s=self.max_s, jitter=self.jitter).next_delay


@dataclass(slots=True)
class SinkStats:
    batches: int = 0
    rows_written: int = 0
    dead_letters: int = 0
    retries: int = 0
    checkpoints_saved: int = 0
    committed: dict[str, int] = field(default_factory=dict)


Attempt = tuple[list[tuple[int, float]], Exception | None]
"""A first attempt at a batch's groups: rows and seconds of each group written, in
order, and the error that stopped it (the groups after those written are left)."""


class GroupInserter:
    """Inserts groups into their targets for one sink worker.

    ``reader`` gives the worker's reader (None before it runs) to wait in the
    group between retries; ``stopping`` says whether the worker was told to
    stop. ``sleep``, when given, replaces the reader's wait (tests)."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        resources: Sequence[StagedResource],
        *,
        retry: RetryPolicy,
        clock: Clock,
        metrics: Metrics,
        stats: SinkStats,
        reader: Callable[[], RecordReader | None],
        stopping: Callable[[], bool],
        sleep: Callable[[float], None] | None,
    ) -> None:
        self._targets = targets
        self._resource_of = {r.topic.name: r.name for r in resources}
        self._time_field = {r.topic.name: r.time_field for r in resources}
        self._retry = retry
        self._clock = clock
        self._metrics = metrics
        self._stats = stats
        self._reader = reader
        self._stopping = stopping
        self._sleep = sleep
        self._deadline = 0.0
        self._log_throttle = LogThrottle(clock=clock)
        """One warning per kind of dead letter a minute; the metric counts every one."""

    def new_batch(self) -> None:
        """Start the retry budget of a batch (all its groups share it)."""
        self._deadline = self._clock.monotonic() + self._retry.give_up_after_s

    def attempt(self, groups: Sequence[InsertBatch]) -> Attempt:
        """Each group's first insert, until one fails; nothing else (the insert thread
        runs this, the worker's thread handles what it leaves with :meth:`write`)."""
        done: list[tuple[int, float]] = []
        for group in groups:
            started = self._clock.monotonic()
            try:
                rows = self._targets[group.topic].write(group.records, group.token)
            except Exception as exc:  # noqa: BLE001 - handed to the worker's thread as is
                return done, exc
            done.append((rows, self._clock.monotonic() - started))
        return done, None

    def write(self, group: InsertBatch, *, failed: Exception | None = None) -> list[DeadLetter]:
        """Insert one group; returns the dead letters of the records refused.

        ``failed``: the error a first attempt at this group already raised."""
        try:
            self._insert(group, failed)
        except _Revoked:
            # The partition moved to another member while we waited: it reads
            # these records again; writing them late could only add repeats.
            log.info(
                "%s[%d] was revoked while retrying; leaving it to its new owner",
                group.topic,
                group.partition,
            )
            return []
        except DeadLetterError as exc:
            if len(group.records) == 1:
                return [self._dead_letter(group, exc)]
            first, second = group.halves()  # the error was this group's: halves start afresh
            return self.write(first) + self.write(second)
        return []

    def written(self, group: InsertBatch, rows: int, seconds: float) -> None:
        """Count an insert that succeeded."""
        labels = {"resource": self._resource_of[group.topic]}
        self._stats.rows_written += rows
        self._metrics.observe("sink_insert_seconds", seconds, labels, help="Insert latency")
        self._metrics.inc("sink_rows_written_total", rows, labels, help="Rows inserted")
        self._metrics.inc("sink_batches_written_total", 1, labels, help="Inserts that succeeded")
        self._observe_freshness(group, labels)

    def _dead_letter(self, group: InsertBatch, exc: DeadLetterError) -> DeadLetter:
        record = group.records[0]
        held = self._log_throttle.allow((record.topic, type(exc).__name__))
        if held is not None:
            log.warning(
                "dead-lettering %s[%d]@%d: %s%s",
                record.topic,
                record.partition,
                record.offset,
                exc,
                held_back(held),
            )
        return DeadLetter(
            self._resource_of[record.topic],
            record.key,
            record.value,
            tuple(record.headers),
            str(exc),
            _code_of(exc),
            f"{record.topic}[{record.partition}]@{record.offset}",
        )

    def _insert(self, group: InsertBatch, failed: Exception | None) -> None:
        target = self._targets[group.topic]
        deadline = self._deadline
        next_delay = self._retry.delays()
        labels = {"resource": self._resource_of[group.topic]}
        while True:
            started = self._clock.monotonic()
            try:
                if failed is not None:
                    error, failed = failed, None
                    raise error  # the first attempt's, handled as if raised here
                rows = target.write(group.records, group.token)
            except (BackoffError, RetryError) as exc:
                delay = next_delay()
                if self._clock.monotonic() + delay > deadline:
                    raise
                self._stats.retries += 1
                self._metrics.inc(
                    "sink_retries_total",
                    labels=labels,
                    help="Inserts retried after a transient error",
                )
                log.warning(
                    "warehouse unavailable (%s); retrying %s in %.1fs", exc, group.token, delay
                )
                reader = self._reader()
                if self._sleep is not None:
                    self._sleep(delay)
                elif reader is not None:
                    reader.wait(delay)
                if reader is not None and (
                    Partition(group.topic, group.partition) not in reader.assignment()
                ):
                    raise _Revoked from None
                if self._stopping():
                    raise StopError(
                        f"stopped while retrying {group.token} ({exc}); nothing of the batch "
                        "was committed, it will be read again"
                    ) from None
                continue
            self.written(group, rows, self._clock.monotonic() - started)
            return

    def _observe_freshness(self, group: InsertBatch, labels: dict[str, str]) -> None:
        """The newest written record's event time to now. Decodes that one record
        when the reader did not (a body ClickHouse accepted but Python cannot
        read leaves the metric as it was)."""
        time_field = self._time_field.get(group.topic)
        if time_field is None:
            return
        try:
            newest = group.records[-1].record.get(time_field)
        except CorruptRecordError:
            return
        if newest is not None:
            self._metrics.set(
                "sink_freshness_seconds",
                (self._clock.wall_us() - to_micros(newest)) / 1e6,
                labels,
                help="Event time of the newest written record to now",
            )


def _code_of(error: Exception) -> str:
    """The server code an error carries, else its class name."""
    code = getattr(error, "code", None)
    return str(code) if code is not None else type(error).__name__


class _Revoked(Exception):
    """Internal: the group's partition is no longer this member's."""
