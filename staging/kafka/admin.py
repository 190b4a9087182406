"""Staging topics: reachability, creation with their configs, and checks."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, not in __all__
    AdminClient,
    ConfigResource,
    NewTopic,
)

from foundation.config import KafkaSettings
from foundation.errors import TopicError, UnknownTopicError
from staging.kafka.client_config import admin_config
from staging.kafka.translate import broker_call, client_settings, kafka_error_of
from staging.resource import TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionReplicas:
    """Where one partition lives: its leader (-1 while it has none) and replicas."""

    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


def _led(topic: Any, partitions: int) -> bool:
    """True if ``topic`` (metadata) has ``partitions`` partitions, each with a leader."""
    if topic is None or topic.error is not None or len(topic.partitions) < partitions:
        return False
    return all(p.leader >= 0 for p in topic.partitions.values())


class TopicAdmin:
    """Creates and checks topics; every call is bounded by ``connect_timeout_s``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        with client_settings("admin"):
            self._admin = AdminClient(admin_config(kafka))
        self._timeout = kafka.connect_timeout_s

    def existing_topics(self) -> dict[str, int]:
        """Topic name to partition count; raises BrokerUnavailableError if unreachable."""
        try:
            with broker_call("listing topics", self._kafka.bootstrap):
                metadata = self._admin.list_topics(timeout=self._timeout)
        finally:
            self._admin.poll(0)  # serve librdkafka's log queue into Python logging
        return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}

    def brokers(self) -> list[int]:
        """The ids of the brokers the cluster's metadata lists now."""
        try:
            with broker_call("listing brokers", self._kafka.bootstrap):
                metadata = self._admin.list_topics(timeout=self._timeout)
        finally:
            self._admin.poll(0)
        return sorted(metadata.brokers)

    def under_replicated(self) -> list[str]:
        """``topic[partition]`` of every partition whose in-sync replicas are fewer than its
        replicas, or that has no leader; empty when the cluster is fully in sync."""
        try:
            with broker_call("listing topics", self._kafka.bootstrap):
                metadata = self._admin.list_topics(timeout=self._timeout)
        finally:
            self._admin.poll(0)
        return sorted(
            f"{name}[{p.id}]"
            for name, topic in metadata.topics.items()
            for p in topic.partitions.values()
            if p.leader < 0 or len(p.isrs) < len(p.replicas)
        )

    def replicas(self, topic: str) -> dict[int, PartitionReplicas]:
        """Leader, replicas and in-sync replicas of each partition of ``topic``."""
        try:
            with broker_call(f"describing topic {topic}", self._kafka.bootstrap, topic=topic):
                metadata = self._admin.list_topics(topic, timeout=self._timeout)
        finally:
            self._admin.poll(0)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise TopicError(f"topic {topic} does not exist", topic=topic)
        return {
            p.id: PartitionReplicas(p.leader, tuple(p.replicas), tuple(p.isrs))
            for p in found.partitions.values()
        }

    def ensure(
        self, specs: Sequence[TopicSpec], *, max_message_bytes: int | None = None
    ) -> list[str]:
        """Create the topics that do not exist yet; return the names created.

        ``max_message_bytes`` sets the topic's ``max.message.bytes`` so that the
        broker accepts every record the staging size limit lets through.
        """
        existing = self.existing_topics()
        wanted = {s.name: s for s in specs}
        for name, spec in wanted.items():
            have = existing.get(name)
            if have is not None and have < spec.partitions:
                log.warning(
                    "topic %s has %d partitions, fewer than the %d configured; "
                    "durable-ingest does not repartition topics",
                    name,
                    have,
                    spec.partitions,
                )
        missing = [s for name, s in wanted.items() if name not in existing]
        if not missing:
            return []
        futures = self._admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config=s.kafka_config(max_message_bytes=max_message_bytes),
                )
                for s in missing
            ],
            request_timeout=self._timeout,
        )
        created = []
        for name, future in futures.items():
            try:
                with broker_call(f"creating topic {name}", self._kafka.bootstrap, topic=name):
                    try:
                        future.result(timeout=self._timeout)
                    except KafkaException as exc:
                        error = kafka_error_of(exc)
                        if error is not None and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                            continue  # created meanwhile by another worker
                        raise
            except TopicError as exc:
                raise TopicError(f"cannot create topic {name}: {exc}", topic=name) from None
            created.append(name)
            log.info("created topic %s", name)
        # Only the topics created here: one another worker created meanwhile may have
        # other partitions (the warning above is for that).
        self._await_visible({s.name: s.partitions for s in missing if s.name in created})
        return sorted(created)

    def _await_visible(self, wanted: dict[str, int]) -> None:
        """Wait until the metadata shows each topic with a leader for every partition.

        A created topic reaches the brokers' metadata a moment after the
        controller accepted it; on a multi-broker Apache Kafka cluster, a
        describe or produce sent at once can still hear "unknown topic".
        """
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                with broker_call("listing topics", self._kafka.bootstrap):
                    metadata = self._admin.list_topics(timeout=self._timeout)
            finally:
                self._admin.poll(0)
            pending = [
                name
                for name, partitions in wanted.items()
                if not _led(metadata.topics.get(name), partitions)
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TopicError(
                    f"topic {pending[0]} was created but has no leader for every partition "
                    f"after {self._timeout:.0f} s",
                    topic=pending[0],
                )
            time.sleep(0.05)

    def topic_config(self, topic: str) -> dict[str, str | None]:
        """The topic's configuration as the broker reports it.

        Just after a topic is created, the broker that answers may not know it
        yet (a multi-broker cluster spreads metadata a moment later): "unknown
        topic" is asked again until ``connect_timeout_s`` passes.
        """
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                with broker_call(f"describing topic {topic}", self._kafka.bootstrap, topic=topic):
                    configs = self._admin.describe_configs(
                        [resource], request_timeout=self._timeout
                    )
                    entries = configs[resource].result(timeout=self._timeout)
                return {name: entry.value for name, entry in entries.items()}
            except UnknownTopicError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def check_compacted(self, topic: str) -> None:
        """Raise TopicError unless ``topic`` has ``cleanup.policy=compact``."""
        value = self.topic_config(topic).get("cleanup.policy")
        if value is None or "compact" not in str(value):
            raise TopicError(
                f"checkpoint topic {topic} has cleanup.policy={value}, not compact: "
                "checkpoints would expire with retention; recreate it compacted",
                topic=topic,
            )
