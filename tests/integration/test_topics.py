"""Staging topics are created with the partitions, retention and compaction configured."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from foundation.config import KafkaSettings
from foundation.errors import TopicError
from staging.kafka import KafkaCheckpointStore, KafkaStagingProvider
from staging.resource import StagedResource, TopicSpec
from staging.schemas import SchemaCatalog
from tests.helpers import unique


def describe(kafka: KafkaSettings, topic: str) -> tuple[int, dict[str, str]]:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return partitions, {k: v.value for k, v in entries.items()}


def test_topics_have_the_configured_partitions_and_retention(
    kafka: KafkaSettings, catalog: SchemaCatalog
) -> None:
    """A resource's topic and dead-letter topic get its partitions and staging TTL."""
    resource = StagedResource.define(
        source=unique("s"),
        name=unique("r"),
        schema=catalog.load("coinbase/matches.avsc"),
        key=("product_id",),
        partitions=5,
        retention_ms=3_600_000,
    )
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    created = provider.ensure_topics([resource])
    assert created == sorted([resource.topic.name, resource.dlq.name])
    assert provider.ensure_topics([resource]) == []  # idempotent
    partitions, config = describe(kafka, resource.topic.name)
    assert partitions == 5 and config["retention.ms"] == "3600000"
    assert int(config["max.message.bytes"]) >= 1_000_000  # the broker accepts our largest record
    dlq_partitions, dlq_config = describe(kafka, resource.dlq.name)
    assert dlq_partitions == 1 and dlq_config["retention.ms"] == "3600000"


def test_checkpoint_topic_must_be_compacted(kafka: KafkaSettings) -> None:
    """A checkpoint topic that exists without compaction is refused: checkpoints would expire."""
    name = f"ingest._checkpoints.{uuid.uuid4().hex[:8]}"
    KafkaStagingProvider(
        kafka, catalog=SchemaCatalog.default(), max_record_bytes=1_000_000
    )._admin.ensure([TopicSpec(name, partitions=1)])
    with pytest.raises(TopicError, match="not compact"):
        KafkaCheckpointStore(kafka, TopicSpec(name, partitions=1, retention_ms=-1, compacted=True))
