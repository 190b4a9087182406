"""The sink worker: staged batches into their targets (tables or streams), then commit.

For every batch the reader yields, in this order:

1. records are grouped per partition and writer schema and inserted, each
   group with its deterministic deduplication token; a transient warehouse error is retried
   with backoff (same token) until ``RetryPolicy.give_up_after_s``;
2. a group the warehouse refuses for its content is split in halves until the
   refused records are isolated; those, and records that could not even be
   decoded, are staged to the resource's dead-letter topic;
3. only then are the batch's next offsets committed;
4. then, per partition, the newest source checkpoint the batch carried is
   saved (:mod:`staging.checkpoints` explains how a source resumes from them).

A crash anywhere before 3 re-reads the batch: the deduplication token (same
records, same token) and the ReplacingMergeTree natural key absorb the
repeat. Nothing is committed for records that were neither written nor
dead-lettered, and no checkpoint moves past a record that is not written.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from foundation.backoff import Backoff
from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import (
    BackoffError,
    CommitFailedError,
    CorruptRecordError,
    DeadLetterError,
    RetryError,
    StopError,
)
from foundation.log_throttle import LogThrottle, held_back
from foundation.metrics import Metrics
from sink_workers.batching import InsertBatch, by_partition
from sink_workers.sink_metrics import declare_series, publish_lag
from sink_workers.targets import Target
from staging.checkpoints import CheckpointStore, partition_slot
from staging.deadletters import DeadLetter
from staging.offsets import Partition
from staging.protocol import RecordReader, StagedBatch, StagingSession
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


class SinkWorker:
    """Runs one staging session's reader into its resources' tables."""

    def __init__(
        self,
        session: StagingSession,
        targets: Mapping[str, Target],
        *,
        chunk_size: int = 5_000,
        retry: RetryPolicy | None = None,
        max_dead_letter_ratio: float = 0.1,
        min_dead_letters_to_stop: int = 100,
        checkpoints: CheckpointStore | None = None,
        per_instance: bool = False,
        metrics: Metrics | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._session = session
        self._targets = targets
        self._resource_of = {r.topic.name: r.name for r in session.context.resources}
        missing = set(self._resource_of) - set(targets)
        if missing:
            raise StopError(f"no target for staged topics {sorted(missing)}")
        self._decode = any(
            getattr(targets[topic], "needs_records", True) for topic in self._resource_of
        )
        """Decode while reading only for a target that reads records: the others
        hand the staged bodies on (ClickHouse's Avro input parses them). A target
        that does not say decodes (targets written before ``needs_records`` existed)."""
        self._chunk_size = chunk_size
        self._retry = retry or RetryPolicy()
        self._max_ratio = max_dead_letter_ratio
        self._min_to_stop = min_dead_letters_to_stop
        self._checkpoints = checkpoints
        self._per_instance = per_instance
        """The source runs as named instances: save each one's newest checkpoint."""
        self.metrics = metrics or Metrics()
        self._time_field = {r.topic.name: r.time_field for r in session.context.resources}
        self._running = False
        self._failed: str | None = None
        self._sleep = sleep  # None: wait through the reader, staying in the group
        self._clock = clock
        self._reader: RecordReader | None = None
        self._deadline = 0.0
        self._stopping = False
        self.stats = SinkStats()
        self._last_checkpoints: dict[str, Any] = {}
        self._log_throttle = LogThrottle(clock=clock)
        """One warning per kind of dead letter a minute; the metric counts every one."""
        declare_series(self.metrics, [r.name for r in session.context.resources])

    def health(self) -> dict[str, Any]:
        """For ``/health``: healthy while running and not failed."""
        reader = self._reader
        return {
            "healthy": self._running and self._failed is None,
            "running": self._running,
            "failed": self._failed,
            "assigned_partitions": sorted(str(p) for p in reader.assignment()) if reader else [],
            "batches": self.stats.batches,
            "rows_written": self.stats.rows_written,
            "dead_letters": self.stats.dead_letters,
            "last_checkpoints": dict(self._last_checkpoints),
        }

    def run(self, *, idle_timeout_s: float | None = None) -> SinkStats:
        """Consume until stopped (or idle for ``idle_timeout_s``); returns the counts."""
        self._running = True
        try:
            return self._run(idle_timeout_s)
        except Exception as exc:
            self._failed = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._running = False

    def _run(self, idle_timeout_s: float | None) -> SinkStats:
        reader = self._reader = self._session.reader()
        if self._stopping:
            return self.stats
        dead_letters = self._session.dead_letters()
        seen = 0
        for batch in reader.iter_batches(
            self._chunk_size,
            poll_timeout_s=0.5,
            idle_timeout_s=idle_timeout_s,
            on_corrupt="collect",
            decode=self._decode,
        ):
            letters = self.write(batch)
            if letters:
                dead_letters.send(letters)  # before the commit: a dead letter is never lost
            self.stats.batches += 1
            self.stats.dead_letters += len(letters)
            for letter in letters:
                self.metrics.inc(
                    "sink_dead_letters_total",
                    labels={"resource": letter.resource},
                    help="Records sent to a dead-letter topic",
                )
            try:
                committed = reader.commit(batch)
            except CommitFailedError as exc:
                # Typically a rebalance: whoever owns the partitions now reads
                # these records again, and the natural key (ReplacingMergeTree)
                # absorbs the repeat. Save no checkpoint for this batch.
                log.warning("%s", exc)
                self.metrics.inc("sink_commit_failures_total", help="Commits the group refused")
                committed = {}
            self._save_checkpoints(batch, committed)
            for part, offset in committed.items():
                self.stats.committed[str(part)] = offset
                self.metrics.set(
                    "sink_committed_offset",
                    offset,
                    {"topic": part.topic, "partition": str(part.partition)},
                    help="Last committed next offset",
                )
            self.metrics.set(
                "sink_assigned_partitions",
                len(reader.assignment()),
                help="Partitions this member owns",
            )
            publish_lag(self.metrics, reader.ends(), committed, self._resource_of)
            seen += len(batch.records) + len(batch.corrupt)
            if (
                self.stats.dead_letters >= self._min_to_stop
                and self.stats.dead_letters > self._max_ratio * seen
            ):
                raise StopError(
                    f"{self.stats.dead_letters} of {seen} records went to dead-letter topics, "
                    f"over the bound of {self._max_ratio:.0%}: stopping (what was written is committed)"
                )
        return self.stats

    def _save_checkpoints(self, batch: StagedBatch, committed: Mapping[Partition, int]) -> None:
        """After the commit: per partition, the newest checkpoint whose carrier was written."""
        if self._checkpoints is None:
            return
        source = self._session.context.source
        try:
            carried_checkpoints = batch.carried_checkpoints(per_instance=self._per_instance)
        except CorruptRecordError as exc:
            # The rows are written and committed; only the checkpoint is unusable.
            log.error("checkpoint not saved: %s", exc)
            self.metrics.inc(
                "sink_bad_checkpoints_total", help="Checkpoint headers that could not be read"
            )
            return
        for carried in carried_checkpoints:
            if Partition(carried.topic, carried.partition) not in committed:
                continue  # not ours any more: its new owner re-reads and saves it
            self._checkpoints.save(
                source,
                partition_slot(carried.resource, carried.partition, carried.instance),
                carried.entry(),
            )
            self.stats.checkpoints_saved += 1
            self._last_checkpoints[carried.resource] = carried.checkpoint
            self.metrics.set(
                "sink_last_checkpoint_saved_seconds",
                self._clock.wall_us() / 1e6,
                {"resource": carried.resource, "partition": str(carried.partition)},
                help="Unix time the newest checkpoint of a partition was saved",
            )

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and return from :meth:`run`."""
        self._stopping = True
        if self._reader is not None:
            self._reader.stop()

    def write(self, batch: StagedBatch) -> list[DeadLetter]:
        """Insert a batch's records; return the dead letters (corrupt or refused).

        Transient failures are retried within one budget for the whole batch
        (``RetryPolicy.give_up_after_s``); between tries the reader waits in
        the group with its partitions paused."""
        self._deadline = self._clock.monotonic() + self._retry.give_up_after_s
        letters = [
            DeadLetter.of_corrupt(self._resource_of.get(c.topic, ""), c) for c in batch.corrupt
        ]
        for group in by_partition(batch.records):
            letters.extend(self._write_group(group))
        return letters

    def _write_group(self, group: InsertBatch) -> list[DeadLetter]:
        target = self._targets[group.topic]
        try:
            self._insert(target, group)
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
                return [
                    DeadLetter(
                        self._resource_of[record.topic],
                        record.key,
                        record.value,
                        tuple(record.headers),
                        str(exc),
                        _code_of(exc),
                        f"{record.topic}[{record.partition}]@{record.offset}",
                    )
                ]
            first, second = group.halves()
            return self._write_group(first) + self._write_group(second)
        return []

    def _insert(self, target: Target, group: InsertBatch) -> None:
        deadline = self._deadline
        next_delay = self._retry.delays()
        labels = {"resource": self._resource_of[group.topic]}
        while True:
            started = self._clock.monotonic()
            try:
                rows = target.write(group.records, group.token)
            except (BackoffError, RetryError) as exc:
                delay = next_delay()
                if self._clock.monotonic() + delay > deadline:
                    raise
                self.stats.retries += 1
                self.metrics.inc(
                    "sink_retries_total",
                    labels=labels,
                    help="Inserts retried after a transient error",
                )
                log.warning(
                    "warehouse unavailable (%s); retrying %s in %.1fs", exc, group.token, delay
                )
                if self._sleep is not None:
                    self._sleep(delay)
                elif self._reader is not None:
                    self._reader.wait(delay)
                if self._reader is not None and (
                    Partition(group.topic, group.partition) not in self._reader.assignment()
                ):
                    raise _Revoked from None
                if self._stopping:
                    raise StopError(
                        f"stopped while retrying {group.token} ({exc}); nothing of the batch "
                        "was committed, it will be read again"
                    ) from None
                continue
            self.stats.rows_written += rows
            self.metrics.observe(
                "sink_insert_seconds",
                self._clock.monotonic() - started,
                labels,
                help="Insert latency",
            )
            self.metrics.inc("sink_rows_written_total", rows, labels, help="Rows inserted")
            self.metrics.inc("sink_batches_written_total", 1, labels, help="Inserts that succeeded")
            self._observe_freshness(group, labels)
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
            self.metrics.set(
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
