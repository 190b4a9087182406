"""The Checkpoint Store on a compacted Kafka topic (``ingest._checkpoints``).

Each save is one record: key ``<source>/<resource>``, value the JSON
``{"checkpoint": {...}, "saved_at": "<RFC 3339>"}``. Compaction keeps the
newest value per key. Loading reads the single partition from the start up to
a *fence*: a tombstone this store produces first and whose offset its delivery
report returns. That bounds the read without trusting the high watermark
(which some Kafka-compatible brokers, Tansu among them, report wrongly).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from foundation.clock import SYSTEM_CLOCK
from foundation.config import KafkaSettings
from foundation.errors import BrokerUnavailableError, CheckpointError, StagingClosedError
from staging.checkpoints import checkpoint_key
from staging.envelope import Checkpoint, encode_checkpoint
from staging.kafka.admin import TopicAdmin
from staging.kafka.client_config import consumer_config, producer_config
from staging.kafka.stranded import RenewingProducer
from staging.kafka.translate import client_settings, consume_error, delivery_error, produce_error
from staging.resource import TopicSpec
from staging.times import rfc3339

log = logging.getLogger(__name__)

FENCE_KEY = b"\x00fence"


class _Report:
    __slots__ = ("error", "offset")

    def __init__(self) -> None:
        self.error: KafkaError | None = None
        self.offset: int | None = None

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        self.error = error
        self.offset = message.offset() if error is None else None


def apply_record(found: dict[str, dict[str, Any]], key: bytes | None, value: bytes | None) -> bool:
    """One record of the checkpoint topic into ``found`` (newest per key): a tombstone
    removes its key; fences and keyless records are skipped. False for a value that is
    not a saved checkpoint."""
    if key is None or key == FENCE_KEY:
        return True
    name = key.decode("utf-8", "replace")
    if value is None:
        found.pop(name, None)
        return True
    try:
        found[name] = json.loads(value)["checkpoint"]
    except (ValueError, KeyError, TypeError):
        return False
    return True


class KafkaCheckpointStore:
    """Checkpoints in a compacted, single-partition Kafka topic."""

    def __init__(self, kafka: KafkaSettings, topic: TopicSpec) -> None:
        if not topic.compacted or topic.partitions != 1:
            raise CheckpointError(
                f"checkpoint topic {topic.name} must be compacted with 1 partition"
            )
        self._kafka = kafka
        self._topic = topic.name
        admin = TopicAdmin(kafka)
        admin.ensure([topic])
        admin.check_compacted(topic.name)
        with client_settings("producer"):
            self._producer = RenewingProducer(
                producer_config(kafka, max_record_bytes=1_000_000), Producer
            )
        self._flush_timeout_s = kafka.delivery_timeout_ms / 1000 + 5
        self._closed = False

    def _produce(self, key: bytes, value: bytes | None) -> int:
        if self._closed:
            raise StagingClosedError("checkpoint store is closed")
        report = _Report()
        producer = self._producer.current()
        while True:
            try:
                producer.produce(self._topic, value, key, on_delivery=report.on_delivery)
                break
            except KafkaException as exc:
                raise produce_error(exc, self._topic) from None
            except BufferError:
                producer.poll(0.05)
        left = producer.flush(self._flush_timeout_s)
        if report.error is not None or left or report.offset is None:
            raise delivery_error(self._topic, [report.error] if report.error else [], left or 1)
        return report.offset

    def save(self, source: str, resource: str, checkpoint: Checkpoint) -> None:
        body = encode_checkpoint(checkpoint).decode()
        value = f'{{"checkpoint":{body},"saved_at":"{rfc3339(SYSTEM_CLOCK.wall_us())}"}}'
        self._produce(checkpoint_key(source, resource).encode(), value.encode())

    def load(self, source: str, resource: str) -> dict[str, Any] | None:
        return self.load_all().get(checkpoint_key(source, resource))

    def load_all(self) -> dict[str, dict[str, Any]]:
        """Newest checkpoint per ``<source>/<resource>`` key."""
        fence = self._produce(FENCE_KEY, None)
        config = consumer_config(
            self._kafka, group_id=f"ingest.checkpoint-loader.{uuid.uuid4().hex}"
        )
        with client_settings("consumer"):
            consumer = Consumer(config)
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self._kafka.connect_timeout_s * 3
        try:
            consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
            position = -1
            while position < fence:
                if time.monotonic() > deadline:
                    raise BrokerUnavailableError(
                        f"checkpoint topic {self._topic}: read up to offset {position}, "
                        f"not to the fence at {fence}, in time",
                        bootstrap=self._kafka.bootstrap,
                    )
                try:
                    messages = consumer.consume(500, 0.5)
                except KafkaException as exc:
                    raise consume_error(exc, self._kafka.bootstrap) from None
                for message in messages:
                    if message.error() is not None:
                        continue
                    position = max(position, message.offset() or 0)
                    if not apply_record(found, message.key(), message.value()):
                        log.error(
                            "checkpoint %s at %s[0]@%s is not valid; ignoring it",
                            (message.key() or b"").decode("utf-8", "replace"),
                            self._topic,
                            message.offset(),
                        )
        finally:
            consumer.close()
        return found

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._producer.flush(self._flush_timeout_s)
