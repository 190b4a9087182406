"""The sink worker: staged batches into their targets (tables or streams), then commit.

For every batch the reader yields, in this order:

1. records are grouped per partition and writer schema and inserted, each
   group with its deterministic deduplication token; a transient warehouse
   error is retried with backoff (same token) until
   ``RetryPolicy.give_up_after_s`` (:mod:`sink_workers.inserts`);
2. a group the warehouse refuses for its content is split in halves until the
   refused records are isolated; those, and records that could not even be
   decoded, are staged to the resource's dead-letter topic;
3. only then are the batch's next offsets committed;
4. then, per partition, the newest source checkpoint the batch carried is
   saved (:mod:`staging.checkpoints` explains how a source resumes from them).
   A save the checkpoint store cannot confirm (Kafka down past the delivery
   timeout) does not stop the sink: the entry is kept and saved again after a
   later batch, unless a newer one of its partition replaces it or the partition
   goes to another member. Until then the source would resume from an earlier
   checkpoint: more is re-read, which the deduplication absorbs.

A crash anywhere before 3 re-reads the batch: the deduplication token (same
records, same token) and the ReplacingMergeTree natural key absorb the
repeat. Nothing is committed for records that were neither written nor
dead-lettered, and no checkpoint moves past a record that is not written.

With ``overlap`` (``ingest sink run`` turns it on unless the warehouse is
embedded chDB, which parses on this process's own cores), the first attempt
at a batch's inserts runs on a second thread while the reader fetches the
next batch, so reading and waiting for the warehouse overlap. Everything else stays on the worker's thread and
in order: retries, halving, dead letters, commits and checkpoints of a batch
happen after its inserts and before the next batch's inserts start; batch N+1
is only read, never written or committed, before batch N is committed. A
poll that finds nothing finishes the batch in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import (
    BackoffError,
    CommitFailedError,
    CorruptRecordError,
    RetryError,
    StopError,
)
from foundation.metrics import Metrics
from sink_workers.batching import InsertBatch, by_partition
from sink_workers.inserts import Attempt, GroupInserter, RetryPolicy, SinkStats
from sink_workers.sink_metrics import declare_series, publish_lag
from sink_workers.targets import Target
from staging.checkpoints import CarriedCheckpoint, CheckpointStore, partition_slot
from staging.deadletters import DeadLetter, DeadLetterWriter
from staging.offsets import Partition
from staging.protocol import RecordReader, StagedBatch, StagingSession

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A batch whose inserts' first attempt runs on the insert thread."""

    batch: StagedBatch
    groups: list[InsertBatch]
    attempt: Future[Attempt]


class SinkWorker:
    """Runs one staging session's reader into its resources' tables."""

    def __init__(
        self,
        session: StagingSession,
        targets: Mapping[str, Target],
        *,
        chunk_size: int = 20_000,
        retry: RetryPolicy | None = None,
        max_dead_letter_ratio: float = 0.1,
        min_dead_letters_to_stop: int = 100,
        checkpoints: CheckpointStore | None = None,
        per_instance: bool = False,
        metrics: Metrics | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        overlap: bool = True,
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
        self._max_ratio = max_dead_letter_ratio
        self._min_to_stop = min_dead_letters_to_stop
        self._checkpoints = checkpoints
        self._per_instance = per_instance
        """The source runs as named instances: save each one's newest checkpoint."""
        self.metrics = metrics or Metrics()
        self._running = False
        self._failed: str | None = None
        self._overlap = overlap
        """Write a batch on the insert thread while the next one is read."""
        self._clock = clock
        self._reader: RecordReader | None = None
        self._stopping = False
        self.stats = SinkStats()
        self._inserter = GroupInserter(
            targets,
            session.context.resources,
            retry=retry or RetryPolicy(),
            clock=clock,
            metrics=self.metrics,
            stats=self.stats,
            reader=lambda: self._reader,
            stopping=lambda: self._stopping,
            sleep=sleep,  # None: wait through the reader, staying in the group
        )
        self._seen = 0
        """Records handled (written, dead-lettered) since the run began."""
        self._last_checkpoints: dict[str, Any] = {}
        self._unsaved: dict[str, CarriedCheckpoint] = {}
        """Per partition slot, the newest entry a save could not confirm: saved again later."""
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
            "checkpoints_unsaved": len(self._unsaved),
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
        in_flight: _InFlight | None = None
        with ExitStack() as stack:
            # Leaving waits for an attempt still running: nothing outlives the run.
            pool = (
                stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="sink-insert"))
                if self._overlap
                else None
            )
            for batch in reader.iter_batches(
                self._chunk_size,
                poll_timeout_s=0.5,
                idle_timeout_s=idle_timeout_s,
                on_corrupt="collect",
                decode=self._decode,
                yield_empty=pool is not None,
            ):
                if in_flight is not None:
                    self._complete(in_flight, reader, dead_letters)
                    in_flight = None
                if not batch.offsets:
                    continue  # a poll that found nothing
                groups = by_partition(batch.records)
                in_flight = _InFlight(batch, groups, self._attempt(pool, groups))
                if pool is None:  # in turn: written and committed before the next read
                    self._complete(in_flight, reader, dead_letters)
                    in_flight = None
            if in_flight is not None:
                self._complete(in_flight, reader, dead_letters)
        if self._unsaved:  # one more try before the partitions are given up
            self._save_entries(self._kept(reader.assignment()))
            if self._unsaved:
                log.warning(
                    "%d checkpoint entries not saved at stop: the source would resume from "
                    "an earlier checkpoint (nothing is lost; what is read again is deduplicated)",
                    len(self._unsaved),
                )
        return self.stats

    def _attempt(
        self, pool: ThreadPoolExecutor | None, groups: list[InsertBatch]
    ) -> Future[Attempt]:
        """The first attempt at a batch's groups: on the insert thread, or here and now."""
        if pool is not None:
            return pool.submit(self._inserter.attempt, groups)
        done: Future[Attempt] = Future()
        done.set_result(self._inserter.attempt(groups))
        return done

    def _finish(self, in_flight: _InFlight) -> list[DeadLetter]:
        """Wait for a batch's first attempt; then, on this thread, what it left: retries
        of a transient error, halving of a refusal, the groups after it."""
        done, error = in_flight.attempt.result()
        self._inserter.new_batch()
        letters = [
            DeadLetter.of_corrupt(self._resource_of.get(c.topic, ""), c)
            for c in in_flight.batch.corrupt
        ]
        for group, (rows, seconds) in zip(in_flight.groups, done, strict=False):
            self._inserter.written(group, rows, seconds)
        for group in in_flight.groups[len(done) :]:
            letters.extend(self._inserter.write(group, failed=error))
            error = None
        return letters

    def _complete(
        self, in_flight: _InFlight, reader: RecordReader, dead_letters: DeadLetterWriter
    ) -> None:
        """A batch written: its dead letters, then its commit, then its checkpoints."""
        batch = in_flight.batch
        letters = self._finish(in_flight)
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
        self._save_checkpoints(batch, committed, reader.assignment())
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
        self._seen += len(batch.records) + len(batch.corrupt)
        if (
            self.stats.dead_letters >= self._min_to_stop
            and self.stats.dead_letters > self._max_ratio * self._seen
        ):
            raise StopError(
                f"{self.stats.dead_letters} of {self._seen} records went to dead-letter topics, "
                f"over the bound of {self._max_ratio:.0%}: stopping (what was written is committed)"
            )

    def _save_checkpoints(
        self,
        batch: StagedBatch,
        committed: Mapping[Partition, int],
        owned: frozenset[Partition],
    ) -> None:
        """After the commit: per partition, the newest checkpoint whose carrier was written
        (and those a failed save kept, for partitions still ``owned``)."""
        if self._checkpoints is None:
            return
        try:
            carried_checkpoints = batch.carried_checkpoints(per_instance=self._per_instance)
        except CorruptRecordError as exc:
            # The rows are written and committed; only the checkpoint is unusable.
            log.error("checkpoint not saved: %s", exc)
            self.metrics.inc(
                "sink_bad_checkpoints_total", help="Checkpoint headers that could not be read"
            )
            carried_checkpoints = ()
        # Entries kept from a failed save first, then this batch's (newer: same slot wins).
        wanted = self._kept(owned)
        for carried in carried_checkpoints:
            if Partition(carried.topic, carried.partition) not in committed:
                continue  # not ours any more: its new owner re-reads and saves it
            wanted[partition_slot(carried.resource, carried.partition, carried.instance)] = carried
        self._save_entries(wanted)

    def _kept(self, owned: frozenset[Partition]) -> dict[str, CarriedCheckpoint]:
        """The entries a failed save kept, for partitions still ``owned``: a partition's new
        owner saves its own, newer entries, which an old one saved late would overwrite."""
        return {
            slot: carried
            for slot, carried in self._unsaved.items()
            if Partition(carried.topic, carried.partition) in owned
        }

    def _save_entries(self, wanted: Mapping[str, CarriedCheckpoint]) -> None:
        """Save each slot's entry; after the first the store cannot confirm, keep that one
        and the rest in :attr:`_unsaved` for the next time."""
        if self._checkpoints is None:
            return
        source = self._session.context.source
        self._unsaved = {}
        for slot, carried in wanted.items():
            if self._unsaved:  # the store failed just now: do not wait on it once more
                self._unsaved[slot] = carried
                continue
            try:
                self._checkpoints.save(source, slot, carried.entry())
            except (BackoffError, RetryError) as exc:
                log.warning(
                    "checkpoint of %s[%d] not saved, kept to save after a later batch "
                    "(until then the source would resume from an earlier one): %s",
                    carried.topic,
                    carried.partition,
                    exc,
                )
                self.metrics.inc(
                    "sink_checkpoint_save_failures_total",
                    help="Checkpoint saves the store did not confirm (kept, saved later)",
                )
                self._unsaved[slot] = carried
                continue
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
