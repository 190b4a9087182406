"""What re-driving dead letters needs of Kafka beyond the StagingProvider and TopicScanner.

* :class:`RecordCopier` produces records exactly as given (key, value,
  headers, partition) through an idempotent ``acks=all`` producer and returns
  once every one is acknowledged: a dead letter refused by a sink goes back
  to its staged topic byte for byte.
* :func:`commit_offsets` commits a tool's progress as a consumer group's
  next offsets without joining the group (a "simple consumer" commit), where
  :meth:`staging.kafka.scan.TopicScanner.committed` reads it back. The
  dead-letter tools use the group ``ingest.dlq.<source>``, which no worker joins.

Used by :mod:`durable_ingest.operations.redrive`; see docs/operations.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple, cast

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from foundation.config import KafkaSettings
from foundation.errors import CommitFailedError, StagingClosedError
from staging.kafka.client_config import consumer_config, producer_config
from staging.kafka.translate import (
    client_settings,
    commit_error,
    delivery_error,
    kafka_error_of,
    produce_error,
)
from staging.kafka.writer import DeliveryErrors

log = logging.getLogger(__name__)

_Headers = list[tuple[str, str | bytes | None]]


class OutgoingRecord(NamedTuple):
    """One record to produce as it is."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class RecordCopier:
    """Produces records unchanged; ``send`` returns once all are acknowledged. ``close()`` it."""

    def __init__(self, kafka: KafkaSettings, *, max_record_bytes: int) -> None:
        self._errors = DeliveryErrors()
        config = producer_config(kafka, max_record_bytes=max_record_bytes)
        config["delivery.report.only.error"] = True
        config["on_delivery"] = self._errors
        with client_settings("producer"):
            self._producer: Producer | None = Producer(config)
        self._flush_timeout_s = kafka.delivery_timeout_ms / 1000 + 5

    def send(self, records: Sequence[OutgoingRecord]) -> None:
        """Produce every record; raise a typed delivery error unless all were acknowledged."""
        producer = self._producer
        if producer is None:
            raise StagingClosedError("record copier is closed")
        if not records:
            return
        self._errors.drain()
        for record in records:
            while True:
                try:
                    producer.produce(
                        record.topic,
                        record.value,
                        record.key,
                        record.partition,
                        headers=cast(_Headers, list(record.headers)),
                    )
                    break
                except KafkaException as exc:
                    raise produce_error(exc, record.topic) from None
                except BufferError:
                    producer.poll(0.05)
        undelivered = producer.flush(self._flush_timeout_s)
        errors = self._errors.drain()
        if errors or undelivered:
            topics = ", ".join(sorted({r.topic for r in records}))
            raise delivery_error(topics, errors, undelivered)

    def close(self) -> None:
        if self._producer is not None:
            left = self._producer.flush(self._flush_timeout_s)
            if left:
                log.warning("record copier closed with %d record(s) unconfirmed", left)
            self._producer = None


def commit_offsets(
    kafka: KafkaSettings, group: str, topic: str, offsets: Mapping[int, int]
) -> None:
    """Commit ``offsets`` (partition to next offset) of ``topic`` for ``group``, synchronously.

    The group is never joined: nobody may consume in it, or the broker refuses
    the commit. Raises :class:`CommitFailedError` (retry) when it is refused.
    """
    if not offsets:
        return
    with client_settings("consumer"):
        consumer = Consumer(consumer_config(kafka, group_id=group))
    try:
        wanted = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
        try:
            result = consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            error = kafka_error_of(exc)
            if error is None:
                raise CommitFailedError(f"committing group {group} on {topic}: {exc}") from None
            raise commit_error(error) from None
        for tp in result or []:
            if tp.error is not None:
                raise commit_error(tp.error)
    finally:
        consumer.close()
