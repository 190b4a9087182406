"""The Kafka RecordWriter: encode every row first, produce, wait for every report."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer

from durable_ingest.errors import StagingClosedError
from staging.envelope import Checkpoint, EnvelopeEncoder
from staging.kafka.translate import delivery_error
from staging.offsets import offset_ranges
from staging.protocol import WriteResult
from staging.resource import StagedResource


class _Reports:
    """Delivery reports of one write_batch call (a fresh object per call)."""

    __slots__ = ("errors", "positions")

    def __init__(self) -> None:
        self.errors: list[KafkaError] = []
        self.positions: list[tuple[str, int, int]] = []

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.errors.append(error)
        else:
            self.positions.append(
                (message.topic() or "", message.partition() or 0, message.offset() or 0)
            )


_Headers = list[tuple[str, str | bytes | None]]


def now_micros() -> int:
    return time.time_ns() // 1_000


class KafkaRecordWriter:
    """Stages the rows of one resource through a shared idempotent producer."""

    def __init__(
        self,
        producer: Producer,
        resource: StagedResource,
        *,
        max_record_bytes: int,
        flush_timeout_s: float,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self._producer = producer
        self._resource = resource
        self._topic = resource.topic.name
        self._encoder = EnvelopeEncoder(resource, max_record_bytes=max_record_bytes)
        self._flush_timeout_s = flush_timeout_s
        self._clock = clock
        self.closed = False

    def write_batch(
        self, rows: Sequence[Mapping[str, Any]], *, checkpoint: Checkpoint | None = None
    ) -> WriteResult:
        if self.closed:
            raise StagingClosedError(f"writer for {self._resource.qualified_name} is closed")
        envelopes = self._encoder.encode_batch(
            rows, ingest_time_us=self._clock(), checkpoint=checkpoint
        )
        reports = _Reports()
        on_delivery = reports.on_delivery
        produce = self._producer.produce
        topic = self._topic
        for envelope in envelopes:
            while True:
                try:
                    produce(
                        topic,
                        envelope.value,
                        envelope.key,
                        on_delivery=on_delivery,
                        headers=cast(_Headers, envelope.headers),
                    )
                    break
                except BufferError:
                    # Local queue full: backpressure. Serve reports, then retry.
                    self._producer.poll(0.05)
        undelivered = self._producer.flush(self._flush_timeout_s)
        if reports.errors or undelivered:
            raise delivery_error(topic, reports.errors, undelivered)
        return WriteResult(
            topic=topic,
            count=len(envelopes),
            offsets=offset_ranges(sorted(reports.positions)),
            event_ids=tuple(e.event_id for e in envelopes),
        )
