"""The Kafka RecordWriter: encode every record first (or take staged records as they are),
produce, wait for every report."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import StagingClosedError
from staging.deadletters import DeadLetter
from staging.decoder import StagedRecord
from staging.envelope import Checkpoint, EncodedBatch, EnvelopeEncoder
from staging.kafka.stranded import RenewingProducer
from staging.kafka.translate import delivery_error, produce_error
from staging.protocol import StagingContext, WriteResult
from staging.resource import StagedResource
from staging.restage import restaged

_Headers = list[tuple[str, str | bytes | None]]


class DeliveryErrors:
    """The producer's delivery callback: collects failures only.

    Staging producers run with ``delivery.report.only.error``: a success costs
    no Python callback, and ``flush()`` returning 0 with no error collected
    means every record was acknowledged by all in-sync replicas.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: list[KafkaError] = []

    def __call__(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            with self._lock:
                self._errors.append(error)

    def drain(self) -> list[KafkaError]:
        with self._lock:
            errors, self._errors = self._errors, []
        return errors


class KafkaRecordWriter:
    """Stages the records of one resource through the session's idempotent producer."""

    def __init__(
        self,
        producer: RenewingProducer,
        errors: DeliveryErrors,
        resource: StagedResource,
        *,
        max_record_bytes: int,
        partitions: int,
        flush_timeout_s: float,
        clock: Clock = SYSTEM_CLOCK,
        instance: str = "",
    ) -> None:
        self._producer = producer
        self._errors = errors
        self._resource = resource
        self._topic = resource.topic.name
        self._encoder = EnvelopeEncoder(
            resource, max_record_bytes=max_record_bytes, partitions=partitions, instance=instance
        )
        self._flush_timeout_s = flush_timeout_s
        self._partitions = partitions
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
        return self._send(restaged(records, self._partitions))

    def _check_open(self) -> None:
        if self.closed:
            raise StagingClosedError(f"writer for {self._resource.qualified_name} is closed")

    def _send(self, batch: EncodedBatch) -> WriteResult:
        """Produce every envelope; return once all are acknowledged."""
        # A renewal reports the old producer's records as undelivered: like the failures of
        # an earlier write, they were already reported, so both are drained before this one.
        producer = self._producer.current()
        self._errors.drain()
        produce = producer.produce
        topic = self._topic
        for key, value, headers, partition in zip(
            batch.keys, batch.values, batch.headers, batch.partitions, strict=True
        ):
            while True:
                try:
                    produce(topic, value, key, partition, headers=cast(_Headers, headers))
                    break
                except KafkaException as exc:
                    raise produce_error(exc, topic) from None
                except BufferError:
                    # Local queue full: backpressure. Serve reports, then retry.
                    producer.poll(0.05)
        undelivered = producer.flush(self._flush_timeout_s)
        errors = self._errors.drain()
        if errors or undelivered:
            raise delivery_error(topic, errors, undelivered)
        return WriteResult(topic=topic, count=len(batch), event_ids=tuple(batch.event_ids))


class KafkaDeadLetterWriter:
    """Stages dead letters to each resource's ``.dlq`` topic through the session producer."""

    def __init__(
        self,
        producer: RenewingProducer,
        errors: DeliveryErrors,
        context: StagingContext,
        *,
        flush_timeout_s: float,
    ) -> None:
        self._producer = producer
        self._errors = errors
        self._context = context
        self._flush_timeout_s = flush_timeout_s

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        producer = self._producer.current()
        self._errors.drain()
        topics = set()
        for letter in letters:
            topic = self._context.resource(letter.resource).dlq.name
            topics.add(topic)
            while True:
                try:
                    producer.produce(
                        topic,
                        letter.value,
                        letter.key,
                        headers=cast(_Headers, letter.kafka_headers()),
                    )
                    break
                except KafkaException as exc:
                    raise produce_error(exc, topic) from None
                except BufferError:
                    producer.poll(0.05)
        undelivered = producer.flush(self._flush_timeout_s)
        errors = self._errors.drain()
        if errors or undelivered:
            raise delivery_error(", ".join(sorted(topics)), errors, undelivered)
