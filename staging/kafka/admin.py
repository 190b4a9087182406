"""Staging topics: reachability, creation with their configs, and checks."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, not in __all__
    AdminClient,
    ConfigResource,
    NewTopic,
)

from durable_ingest.config import KafkaSettings
from durable_ingest.errors import TopicError
from staging.kafka.client_config import admin_config
from staging.kafka.translate import broker_call, client_settings, kafka_error_of
from staging.resource import TopicSpec

log = logging.getLogger(__name__)


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
        return sorted(created)

    def check_compacted(self, topic: str) -> None:
        """Raise TopicError unless ``topic`` has ``cleanup.policy=compact``."""
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        with broker_call(f"describing topic {topic}", self._kafka.bootstrap, topic=topic):
            configs = self._admin.describe_configs([resource], request_timeout=self._timeout)
            entries = configs[resource].result(timeout=self._timeout)
        policy = entries.get("cleanup.policy")
        value = policy.value if policy is not None else None
        if value is None or "compact" not in str(value):
            raise TopicError(
                f"checkpoint topic {topic} has cleanup.policy={value}, not compact: "
                "checkpoints would expire with retention; recreate it compacted",
                topic=topic,
            )
