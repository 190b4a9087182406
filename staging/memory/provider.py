"""The in-memory StagingProvider, session, writer and reader."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import CommitFailedError, CorruptRecordError, StagingClosedError
from staging.deadletters import DeadLetter
from staging.decoder import EnvelopeDecoder, StagedRecord
from staging.envelope import Checkpoint, EncodedBatch, EnvelopeEncoder
from staging.memory.broker import MemoryBroker
from staging.offsets import CommitLedger, Partition, offset_ranges
from staging.protocol import OnCorrupt, StagedBatch, StagingContext, WriteResult
from staging.resource import StagedResource
from staging.restage import restaged
from staging.schemas import SchemaCatalog

log = logging.getLogger(__name__)


class MemoryRecordWriter:
    def __init__(
        self,
        broker: MemoryBroker,
        resource: StagedResource,
        *,
        max_record_bytes: int,
        clock: Clock,
        instance: str = "",
    ) -> None:
        self._broker = broker
        self._resource = resource
        self._encoder = EnvelopeEncoder(
            resource,
            max_record_bytes=max_record_bytes,
            partitions=broker.topics()[resource.topic.name],
            instance=instance,
        )
        self._clock = clock
        self.closed = False

    def write_batch(
        self, records: Sequence[Mapping[str, Any]], *, checkpoint: Checkpoint | None = None
    ) -> WriteResult:
        self._check_open()
        batch = self._encoder.encode_batch(
            records, ingest_time_us=self._clock.wall_us(), checkpoint=checkpoint
        )
        return self._send(batch)

    def write_staged(self, records: Sequence[StagedRecord]) -> WriteResult:
        self._check_open()
        partitions = self._broker.topics()[self._resource.topic.name]
        return self._send(restaged(records, partitions))

    def _check_open(self) -> None:
        if self.closed:
            raise StagingClosedError(f"writer for {self._resource.qualified_name} is closed")

    def _send(self, batch: EncodedBatch) -> WriteResult:
        topic = self._resource.topic.name
        for key, value, headers, partition in zip(
            batch.keys, batch.values, batch.headers, batch.partitions, strict=True
        ):
            self._broker.append(topic, key, value, tuple(headers), partition=partition)
        return WriteResult(topic=topic, count=len(batch), event_ids=tuple(batch.event_ids))


class MemoryRecordReader:
    def __init__(
        self,
        broker: MemoryBroker,
        group: str,
        topics: tuple[str, ...],
        decoder: EnvelopeDecoder,
        auto_offset_reset: Literal["earliest", "latest"],
        clock: Clock,
    ) -> None:
        self._clock = clock
        self._broker = broker
        self._group = group
        self._decoder = decoder
        self._reset = auto_offset_reset
        self._member = broker.join(group, topics)
        self._generation = -1
        self._positions: dict[Partition, int] = {}
        self._ledger = CommitLedger()
        self._stopping = False
        self._closed = False

    def _rebalance(self) -> None:
        generation, owned = self._broker.assignment(self._group, self._member)
        if generation == self._generation:
            return
        self._generation = generation
        current = set(self._positions)
        gone = current - owned
        self._ledger.release(gone)
        for part in gone:
            del self._positions[part]
        for part in sorted(owned - current):
            committed = self._broker.committed(self._group, part)
            if committed is None:
                committed = 0 if self._reset == "earliest" else self._broker.end_offset(part)
            self._positions[part] = committed
        self._ledger.assign(owned)

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
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
        self._check_open()
        recognise = self._decoder.decode if decode else self._decoder.frame
        idle_since = self._clock.monotonic()
        while not self._stopping:
            self._rebalance()
            records: list[StagedRecord] = []
            positions: list[tuple[str, int, int]] = []
            corrupt: list[CorruptRecordError] = []
            for part in sorted(self._positions):
                room = chunk_size - len(positions)
                if room <= 0:
                    break
                start = self._positions[part]
                for i, stored in enumerate(self._broker.fetch(part, start, room)):
                    offset = start + i
                    try:
                        records.append(
                            recognise(
                                part.topic,
                                part.partition,
                                offset,
                                stored.key,
                                stored.value,
                                stored,
                            )
                        )
                    except CorruptRecordError as exc:
                        if on_corrupt == "raise":
                            raise  # positions not advanced: nothing is skipped
                        corrupt.append(exc)
                    positions.append((part.topic, part.partition, offset))
            if positions:
                for batch_range in offset_ranges(positions):
                    self._positions[batch_range.key] = batch_range.next_offset
                idle_since = self._clock.monotonic()
                yield StagedBatch(tuple(records), offset_ranges(positions), tuple(corrupt))
                continue
            if (
                idle_timeout_s is not None
                and self._clock.monotonic() - idle_since >= idle_timeout_s
            ):
                return
            if yield_empty:
                yield StagedBatch((), ())
            time.sleep(min(poll_timeout_s, 0.01))

    def commit(self, batch: StagedBatch) -> dict[Partition, int]:
        self._check_open()
        self._rebalance()
        plan = self._ledger.plan(batch.offsets)
        if not plan:
            return {}
        if not self._broker.commit(self._group, self._member, plan):
            raise CommitFailedError(
                "offsets were not committed: the group rebalanced", code="REBALANCE"
            )
        self._ledger.record(plan)
        return plan

    def committed(self) -> dict[Partition, int]:
        self._check_open()
        self._rebalance()
        result = {}
        for part in self._ledger.assigned:
            offset = self._broker.committed(self._group, part)
            if offset is not None:
                result[part] = offset
        return result

    def assignment(self) -> frozenset[Partition]:
        self._check_open()
        self._rebalance()
        return self._ledger.assigned

    def ends(self) -> dict[Partition, int]:
        self._check_open()
        return {part: self._broker.end_offset(part) for part in self._ledger.assigned}

    def wait(self, seconds: float) -> None:
        """Nothing to keep alive in memory: just wait."""
        self._check_open()
        time.sleep(seconds)

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stopping = True
            self._broker.leave(self._group, self._member)
            self._ledger.release(self._ledger.assigned)

    def _check_open(self) -> None:
        if self._closed:
            raise StagingClosedError("reader is closed")


class MemoryDeadLetterWriter:
    def __init__(self, broker: MemoryBroker, context: StagingContext) -> None:
        self._broker = broker
        self._context = context

    def send(self, letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            topic = self._context.resource(letter.resource).dlq.name
            headers = tuple((k, v or b"") for k, v in letter.kafka_headers())
            self._broker.append(topic, letter.key, letter.value, headers)


class MemoryStagingProvider:
    """Staging in this process's memory, with Kafka's semantics."""

    def __init__(
        self,
        *,
        catalog: SchemaCatalog,
        max_record_bytes: int = 1_000_000,
        broker: MemoryBroker | None = None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.broker = broker or MemoryBroker()
        self.catalog = catalog
        self.max_record_bytes = max_record_bytes
        self.auto_offset_reset = auto_offset_reset
        self.clock = clock

    def ensure_topics(self, resources: Sequence[StagedResource]) -> list[str]:
        created = [
            spec.name
            for r in resources
            for spec in (r.topic, r.dlq)
            if self.broker.create_topic(spec)
        ]
        return sorted(created)

    def allocate_session(self, context: StagingContext) -> MemoryStagingSession:
        self.ensure_topics(context.resources)
        for resource in context.resources:
            self.catalog.register(resource.schema)
        return MemoryStagingSession(self, context)


class MemoryStagingSession:
    def __init__(self, provider: MemoryStagingProvider, context: StagingContext) -> None:
        self._provider = provider
        self._context = context
        self._writers: dict[str, MemoryRecordWriter] = {}
        self._readers: list[MemoryRecordReader] = []
        self._closed = False

    @property
    def context(self) -> StagingContext:
        return self._context

    def writer(self, resource: str | None = None) -> MemoryRecordWriter:
        self._check_open()
        spec = self._context.resource(resource)
        writer = self._writers.get(spec.name)
        if writer is None:
            writer = MemoryRecordWriter(
                self._provider.broker,
                spec,
                max_record_bytes=self._provider.max_record_bytes,
                clock=self._provider.clock,
                instance=self._context.instance,
            )
            self._writers[spec.name] = writer
        return writer

    def dead_letters(self) -> MemoryDeadLetterWriter:
        self._check_open()
        return MemoryDeadLetterWriter(self._provider.broker, self._context)

    def reader(self) -> MemoryRecordReader:
        self._check_open()
        reader = MemoryRecordReader(
            self._provider.broker,
            self._context.consumer_group,
            tuple(r.topic.name for r in self._context.resources),
            EnvelopeDecoder(self._provider.catalog),
            self._provider.auto_offset_reset,
            self._provider.clock,
        )
        self._readers.append(reader)
        return reader

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for reader in self._readers:
            reader.close()
        for writer in self._writers.values():
            writer.closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StagingClosedError(f"staging session of {self._context.source} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
