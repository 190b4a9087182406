"""Kafka as the StagingProvider: sessions with one producer and group readers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from confluent_kafka import Producer

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.config import KafkaSettings
from foundation.errors import StagingClosedError
from staging.decoder import EnvelopeDecoder
from staging.kafka.admin import TopicAdmin
from staging.kafka.client_config import (
    consumer_config,
    producer_config,
    topic_max_message_bytes,
)
from staging.kafka.reader import KafkaRecordReader
from staging.kafka.stranded import RenewingProducer
from staging.kafka.translate import client_settings
from staging.kafka.writer import (
    DeliveryErrors,
    KafkaDeadLetterWriter,
    KafkaRecordWriter,
)
from staging.protocol import StagingContext
from staging.resource import StagedResource, TopicSpec
from staging.schemas import SchemaCatalog

log = logging.getLogger(__name__)


def topic_specs(resources: Sequence[StagedResource]) -> list[TopicSpec]:
    """The staging and dead-letter topics of these resources."""
    return [spec for r in resources for spec in (r.topic, r.dlq)]


class KafkaStagingProvider:
    """Allocates staging sessions on a Kafka cluster."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        catalog: SchemaCatalog,
        max_record_bytes: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.kafka = kafka
        self.catalog = catalog
        self.max_record_bytes = max_record_bytes
        self._clock = clock
        self._admin = TopicAdmin(kafka)

    def ensure_topics(self, resources: Sequence[StagedResource]) -> list[str]:
        return self._admin.ensure(
            topic_specs(resources), max_message_bytes=topic_max_message_bytes(self.max_record_bytes)
        )

    def allocate_session(self, context: StagingContext) -> KafkaStagingSession:
        # Fails fast (BrokerUnavailableError within connect_timeout_s) when
        # Kafka cannot be reached, before anything is produced.
        self.ensure_topics(context.resources)
        for resource in context.resources:
            self.catalog.register(resource.schema)
        # Writers partition records themselves, over the topics' actual counts.
        return KafkaStagingSession(self, context, self._admin.existing_topics())


class KafkaStagingSession:
    """One worker's producer and readers for one context; ``close()`` frees them."""

    def __init__(
        self, provider: KafkaStagingProvider, context: StagingContext, partitions: dict[str, int]
    ) -> None:
        self._provider = provider
        self._context = context
        self._partitions = partitions
        self._producer: RenewingProducer | None = None
        self._delivery_errors = DeliveryErrors()
        self._writers: dict[str, KafkaRecordWriter] = {}
        self._readers: list[KafkaRecordReader] = []
        self._closed = False

    @property
    def context(self) -> StagingContext:
        return self._context

    def writer(self, resource: str | None = None) -> KafkaRecordWriter:
        self._check_open()
        spec = self._context.resource(resource)
        writer = self._writers.get(spec.name)
        if writer is None:
            writer = KafkaRecordWriter(
                self._shared_producer(),
                self._delivery_errors,
                spec,
                max_record_bytes=self._provider.max_record_bytes,
                partitions=self._partitions.get(spec.topic.name, spec.topic.partitions),
                flush_timeout_s=self._provider.kafka.delivery_timeout_ms / 1000 + 5,
                clock=self._provider._clock,
                instance=self._context.instance,
            )
            self._writers[spec.name] = writer
        return writer

    def dead_letters(self) -> KafkaDeadLetterWriter:
        self._check_open()
        return KafkaDeadLetterWriter(
            self._shared_producer(),
            self._delivery_errors,
            self._context,
            flush_timeout_s=self._provider.kafka.delivery_timeout_ms / 1000 + 5,
        )

    def reader(self) -> KafkaRecordReader:
        self._check_open()
        kafka = self._provider.kafka
        reader = KafkaRecordReader(
            consumer_config(kafka, group_id=self._context.consumer_group),
            [r.topic.name for r in self._context.resources],
            EnvelopeDecoder(self._provider.catalog),
            bootstrap=kafka.bootstrap,
            timeout_s=kafka.connect_timeout_s,
            clock=self._provider._clock,
        )
        self._readers.append(reader)
        return reader

    def close(self) -> None:
        """Close readers (leaving the group), then flush and drop the producer."""
        if self._closed:
            return
        self._closed = True
        for reader in self._readers:
            reader.close()
        for writer in self._writers.values():
            writer.closed = True
        if self._producer is not None:
            left = self._producer.flush(self._provider.kafka.delivery_timeout_ms / 1000)
            if left:
                log.warning(
                    "staging session %s closed with %d record(s) unconfirmed",
                    self._context.source,
                    left,
                )
            self._producer = None

    def _shared_producer(self) -> RenewingProducer:
        if self._producer is None:
            config = producer_config(
                self._provider.kafka, max_record_bytes=self._provider.max_record_bytes
            )
            config["delivery.report.only.error"] = True
            config["on_delivery"] = self._delivery_errors
            with client_settings("producer"):
                self._producer = RenewingProducer(config, Producer)
        return self._producer

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
