"""The StagingProvider contract: the boundary between workers and Kafka.

A worker asks a :class:`StagingProvider` for a :class:`StagingSession` for a
:class:`StagingContext` (one source, its resources, the consumer group).
The session hands out a :class:`RecordWriter` (sources stage records) and a
:class:`RecordReader` (sinks read staged batches and commit them once
written), and ``close()`` releases everything it opened.

Two implementations honour this contract and pass the same contract suite
(``tests/contract``): :mod:`staging.kafka` (real) and :mod:`staging.memory`
(in-process, for fast tests).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from foundation.errors import CorruptRecordError, UnknownResourceError
from staging.checkpoints import CarriedCheckpoint
from staging.deadletters import DeadLetterWriter
from staging.decoder import StagedRecord
from staging.envelope import Checkpoint
from staging.offsets import OffsetRange, Partition, next_offsets
from staging.resource import StagedResource, check_name

OnCorrupt = Literal["raise", "collect"]


@dataclass(frozen=True, slots=True)
class StagingContext:
    """Who is staging: one source, the resources it stages, its readers' group."""

    source: str
    resources: tuple[StagedResource, ...]
    group_id: str | None = None
    """Consumer group of this session's readers (default ``ingest.sink.<source>``)."""
    instance: str = ""
    """Which process of the source writes (``ingest source run --instance``): several
    processes of one source, each with its own instance name, may stage into the same
    topics; each resumes from its own checkpoints. Empty: the only one."""

    def __post_init__(self) -> None:
        check_name("source", self.source)
        if self.instance:
            check_name("instance", self.instance)
        for resource in self.resources:
            if resource.source != self.source:
                raise UnknownResourceError(
                    f"resource {resource.qualified_name} does not belong to source {self.source}",
                    source=self.source,
                    resource=resource.name,
                )

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"ingest.sink.{self.source}"

    def resource(self, name: str | None = None) -> StagedResource:
        """The resource called ``name`` (or the only one); raises if not declared."""
        if name is None:
            if len(self.resources) == 1:
                return self.resources[0]
            raise UnknownResourceError(
                f"source {self.source} stages {len(self.resources)} resources: "
                "name the one to write",
                source=self.source,
                resource="",
            )
        for resource in self.resources:
            if resource.name == name:
                return resource
        known = ", ".join(r.name for r in self.resources) or "none"
        raise UnknownResourceError(
            f"source {self.source} has no resource {name!r} (declared: {known})",
            source=self.source,
            resource=name,
        )


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A written batch: every record's delivery was confirmed."""

    topic: str
    count: int
    event_ids: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """Records read together, with the offsets their write makes safe to commit."""

    records: tuple[StagedRecord, ...]
    offsets: tuple[OffsetRange, ...]
    """Every position the batch consumed, corrupt records included."""
    corrupt: tuple[CorruptRecordError, ...] = ()
    """Records that could not be decoded (only with ``on_corrupt="collect"``)."""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def commit_offsets(self) -> dict[Partition, int]:
        """Next offset per partition, to commit after this batch is written."""
        return next_offsets(self.offsets)

    @property
    def checkpoints(self) -> tuple[CarriedCheckpoint, ...]:
        """The newest checkpoint per partition in this batch, with its position.

        A write's checkpoint rides on its last record in every partition it
        touched; a later one in the same partition supersedes it. This scans
        each partition's records from the end and stops at the first
        checkpoint, so it reads few headers; call it once per batch. Whether
        the whole write is in the warehouse is decided across partitions by
        :func:`staging.checkpoints.resume_point`. Raises
        :class:`CorruptRecordError` for a checkpoint header that is not JSON.
        """
        return self.carried_checkpoints(per_instance=False)

    def carried_checkpoints(self, *, per_instance: bool) -> tuple[CarriedCheckpoint, ...]:
        """:attr:`checkpoints`, or with ``per_instance`` the newest per partition *and*
        per source instance (``ce_checkpointinstance``): for a source whose processes
        stage into the same topics, each one's newest. That reads every record's
        headers, so only sinks of such sources ask for it."""
        pending = {(r.topic, r.partition) for r in self.offsets}
        seen: set[tuple[str, int, str]] = set()
        found: list[CarriedCheckpoint] = []
        for record in reversed(self.records):
            if not pending:
                break
            where = (record.topic, record.partition)
            if where not in pending:
                continue
            carried = record.carried()
            if carried is None:
                continue
            if not per_instance:
                pending.discard(where)
            elif (*where, carried.instance) in seen:
                continue
            seen.add((*where, carried.instance))
            found.append(carried)
        return tuple(sorted(found, key=lambda c: (c.topic, c.partition, c.instance)))


class RecordWriter(Protocol):
    """Stages records of one resource."""

    def write_batch(
        self, records: Sequence[Mapping[str, Any]], *, checkpoint: Checkpoint | None = None
    ) -> WriteResult:
        """Stage ``records``; return only when every record's delivery succeeded.

        Validates and encodes every record before producing any. Raises
        :class:`~foundation.errors.DeliveryUnknownError` when deliveries
        timed out (resend the same records), and other typed errors otherwise.
        """
        ...

    def write_staged(self, records: Sequence[StagedRecord]) -> WriteResult:
        """Stage records read from another topic as they are (:mod:`staging.restage`):
        key, value and headers unchanged but for the checkpoint headers, partitioned by
        key. Nothing is decoded or validated. Returns and raises as :meth:`write_batch`."""
        ...


class RecordReader(Protocol):
    """A consumer-group member over the session's staged topics."""

    def iter_batches(
        self,
        chunk_size: int,
        *,
        poll_timeout_s: float = 1.0,
        idle_timeout_s: float | None = None,
        on_corrupt: OnCorrupt = "raise",
        decode: bool = True,
        yield_empty: bool = False,
    ) -> Iterator[StagedBatch]:
        """Yield batches of at most ``chunk_size`` records.

        Stops after ``idle_timeout_s`` seconds without a record, counted from
        the first assignment (never, if None), or when :meth:`stop` is called. With ``on_corrupt="raise"`` an
        undecodable record raises :class:`CorruptRecordError` and the reader
        rewinds so that nothing before it is skipped; with ``"collect"`` it
        travels in :attr:`StagedBatch.corrupt` and its offset is committed
        with the batch. With ``decode=False`` values are only recognised
        (:meth:`~staging.decoder.EnvelopeDecoder.frame`: marker and a known
        fingerprint) and their bodies left to whoever parses them, so a body
        that does not match its schema is not found here; such records
        decode when their ``record`` is read. With ``yield_empty`` a poll that
        found nothing yields an empty batch, so that the caller can finish work
        it has in flight while nothing arrives.
        """
        ...

    def commit(self, batch: StagedBatch) -> dict[Partition, int]:
        """Commit the batch's next offsets (owned partitions, forwards only).

        Call only after the batch is durably written. Returns what was committed.
        """
        ...

    def committed(self) -> dict[Partition, int]:
        """The group's committed next offsets for the assigned partitions, from the broker."""
        ...

    def assignment(self) -> frozenset[Partition]:
        """Partitions this member owns right now."""
        ...

    def ends(self) -> dict[Partition, int]:
        """The end (next offset to be written) of each owned partition, as the broker
        last reported it to this reader; no request is sent. A partition not fetched yet
        is missing. A broker with wrong watermarks (Tansu) gives wrong ends."""
        ...

    def wait(self, seconds: float) -> None:
        """Wait (e.g. to retry a write) without being dropped from the group.

        Consumes nothing; serves the group while it waits.
        """
        ...

    def stop(self) -> None:
        """Make :meth:`iter_batches` return after its current poll, now and later.

        Safe to call from a signal handler; a stopped reader stays stopped.
        """
        ...

    def close(self) -> None:
        """Leave the group. Nothing is committed on close."""
        ...


class StagingSession(Protocol):
    """What one worker holds open for one context; ``close()`` releases it all."""

    @property
    def context(self) -> StagingContext:
        """The source, resources and consumer group this session was opened for."""
        ...

    def writer(self, resource: str | None = None) -> RecordWriter:
        """The writer of one resource. A session's writers share one producer:
        use a session from one thread at a time."""
        ...

    def reader(self) -> RecordReader:
        """A consumer-group member over the context's topics (group ``consumer_group``)."""
        ...

    def dead_letters(self) -> DeadLetterWriter:
        """Stages dead letters to each resource's ``.dlq`` topic, through the session's producer."""
        ...

    def close(self) -> None:
        """Release the producer and the readers; idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class StagingProvider(Protocol):
    """Kafka (or an in-memory stand-in) as the durable buffer between workers."""

    def allocate_session(self, context: StagingContext) -> StagingSession:
        """Open a session; creates the context's topics when they are missing."""
        ...

    def ensure_topics(self, resources: Sequence[StagedResource]) -> list[str]:
        """Create missing staging and dead-letter topics; return the created names."""
        ...
