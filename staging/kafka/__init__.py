"""Kafka as the StagingProvider: the only package that imports confluent_kafka.

Modules: :mod:`.client_config` (librdkafka settings, safe by construction),
:mod:`.translate` (librdkafka errors into durable-ingest errors),
:mod:`.admin` (topics), :mod:`.writer`, :mod:`.reader`, :mod:`.provider`
and :mod:`.checkpoints` (the compacted checkpoint topic).
"""

from staging.kafka.checkpoints import KafkaCheckpointStore
from staging.kafka.provider import KafkaStagingProvider, KafkaStagingSession

__all__ = ["KafkaCheckpointStore", "KafkaStagingProvider", "KafkaStagingSession"]
