"""The same StagingProvider and CheckpointStore contract, run on every implementation."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from foundation.config import KafkaSettings
from staging.checkpoints import CheckpointStore
from staging.kafka import KafkaCheckpointStore, KafkaStagingProvider
from staging.memory import InMemoryCheckpointStore, MemoryStagingProvider
from staging.protocol import StagingProvider
from staging.resource import TopicSpec
from staging.schemas import SchemaCatalog


@dataclass
class Harness:
    """A provider plus the back doors a contract test needs (raw bytes, stores)."""

    provider: StagingProvider
    raw_append: Callable[[str, int, bytes | None, bytes | None], None]
    checkpoint_store: Callable[[], CheckpointStore]
    real_kafka: bool


def _memory(catalog: SchemaCatalog) -> Harness:
    provider = MemoryStagingProvider(catalog=catalog, max_record_bytes=1_000_000)

    def raw_append(topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        provider.broker.append(topic, key, value, (), partition=partition)

    # Each call is a new store object over the same broker, as a restarted worker's is.
    return Harness(
        provider, raw_append, lambda: InMemoryCheckpointStore(provider.broker), real_kafka=False
    )


def _kafka(catalog: SchemaCatalog, kafka: KafkaSettings) -> Harness:
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    topic = TopicSpec(
        f"ingest._checkpoints.test.{uuid.uuid4().hex[:8]}",
        partitions=1,
        retention_ms=-1,
        compacted=True,
    )

    def raw_append(topic_name: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        producer.produce(topic_name, value, key, partition=partition)
        assert producer.flush(10) == 0

    return Harness(
        provider, raw_append, lambda: KafkaCheckpointStore(kafka, topic), real_kafka=True
    )


@pytest.fixture
def harness(
    request: pytest.FixtureRequest, test_broker: str, catalog: SchemaCatalog
) -> Iterator[Harness]:
    if test_broker == "memory":
        yield _memory(catalog)
    else:
        yield _kafka(catalog, request.getfixturevalue("kafka"))
